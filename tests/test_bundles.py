"""Result bundles: export -> import into a fresh database reproduces the leaderboard; a bundle
with an altered adversarial example or a flipped outcome is refused naming the run and sample;
a truncated or corrupted bundle is one clear error and changes nothing."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load, save

from arena.cli import cli

RUN = ["run", "-a", "fgsm,pgd", "-d", "standard", "-p", "standard.epochs=2", "--n", "40"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, arena_home) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("bundle")
    db = f"sqlite:///{folder / 'source.db'}"
    with pytest.MonkeyPatch.context() as patch:  # the session's home: its models are those the tests import with
        patch.setenv("ARENA_HOME", str(arena_home))
        done = invoke(*RUN, "--db", db)
        assert done.exit_code == 0, done.output + done.stderr
        bundle = folder / "results.zip"
        written = invoke("export", "--all", "-o", str(bundle), "--db", db)
    assert written.exit_code == 0 and "Exported 2 runs" in written.stdout, written.stderr
    return db, bundle


def _runs(db: str) -> int:
    rows = invoke("results", "--json", "--all", "--db", db)
    return len(json.loads(rows.stdout)) if rows.exit_code == 0 else 0


def test_export_then_import_into_a_fresh_database_reproduces_the_leaderboard(exported, tmp_path):
    source, bundle = exported
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = invoke("import", str(bundle), "--origin", "lab-b", "--db", fresh)
    assert done.exit_code == 0, done.output + done.stderr
    assert "Checked 2 runs: 2 re-classified with this machine's checkpoints" in done.stdout
    assert "Imported 2 runs" in done.stdout
    board = lambda db, fmt: invoke("leaderboard", "--format", fmt, "--db", db).stdout  # noqa: E731
    assert board(fresh, "md") == board(source, "md")
    assert json.loads(board(fresh, "json")) == json.loads(board(source, "json"))  # every table, every entry
    outcomes = lambda db: sorted((r["key"], r["robust_accuracy"], r["clean_accuracy"])  # noqa: E731
                                 for r in json.loads(invoke("results", "--json", "--db", db).stdout))
    assert outcomes(fresh) == outcomes(source)

    again = invoke("import", str(bundle), "--origin", "lab-b", "--db", fresh)
    assert again.exit_code == 0 and "Imported 0 runs" in again.stdout and "2 runs already imported" in again.stdout
    assert _runs(fresh) == 2  # stored once

    assert "standard(epochs=2)" in invoke("leaderboard", "--origin", "lab-b", "--db", fresh).stdout
    local = invoke("leaderboard", "--origin", "local", "--db", fresh).stdout
    assert "standard(epochs=2)" not in local and "No results to show" in local
    shown = invoke("show", "1", "--db", fresh).stdout
    assert "Imported from lab-b" in shown and "after its checks passed" in shown
    assert "Examples: " in shown  # its examples came with it, into this machine's artifact store


def _rewrite(bundle: Path, target: Path, change) -> Path:
    """A careful forger's bundle: ``change(records, files)`` edits it, every hash is made to fit."""
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name) for name in archive.namelist() if name != "manifest.json"}
        manifest = json.loads(archive.read("manifest.json"))
    records = json.loads(files["runs.json"])
    change(records, files)
    files["runs.json"] = json.dumps(records, sort_keys=True).encode()
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def _refused(bundle: Path, tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'target.db'}"
    done = invoke("import", str(bundle), "--db", db)
    assert done.exit_code == 1 and "nothing was imported" in done.stderr, done.output + done.stderr
    assert _runs(db) == 0
    return done.stderr


def test_an_example_moved_one_pixel_beyond_eps_refuses_the_bundle(exported, tmp_path):
    _, bundle = exported
    found = {}

    def beyond_eps(records, files):
        record = records[0]
        name = record["artifacts"]["examples"]
        arrays = {k: v.copy() for k, v in load(files.pop(name)).items()}
        pixel = np.unravel_index(int(np.argmin(arrays["x"][0])), arrays["x"][0].shape)
        arrays["x_adv"][0][pixel] = arrays["x"][0][pixel] + 0.2 + 0.05  # eps is 0.2
        data = save(arrays)
        renamed = f"artifacts/{hashlib.sha256(data).hexdigest()}.safetensors"
        files[renamed] = data
        record["artifacts"]["examples"] = renamed
        found.update(run=record["run"]["id"], sample=int(arrays["index"][0]))

    report = _refused(_rewrite(bundle, tmp_path / "forged.zip", beyond_eps), tmp_path)
    assert f"run {found['run']} (" in report and f"sample {found['sample']}: the adversarial example leaves the " \
        "threat model (linf 0.25 for eps 0.2" in report


def test_a_flipped_outcome_refuses_the_bundle(exported, tmp_path):
    _, bundle = exported
    found = {}

    def flip(records, files):
        record = records[1]
        sample = next(s for s in record["samples"] if s["robust"])
        sample["robust"] = False
        found.update(run=record["run"]["id"], sample=sample["index"])

    report = _refused(_rewrite(bundle, tmp_path / "flipped.zip", flip), tmp_path)
    assert f"run {found['run']} (" in report and f"sample {found['sample']}: robust is false, but its outcomes say true" \
        in report
    assert "robust_accuracy is" in report  # and the accuracy no longer matches its samples


def test_a_plugin_at_another_version_refuses_the_bundle(exported, tmp_path):
    _, bundle = exported

    def other_version(records, files):
        records[0]["run"]["provenance"]["plugins"]["attack"]["version"] = "9.9"
        records[0]["robustness"]["attack_version"] = "9.9"

    report = _refused(_rewrite(bundle, tmp_path / "version.zip", other_version), tmp_path)
    assert "from arena-bench 9.9; here it is arena-bench" in report and "pip install 'arena-bench==9.9'" in report


def test_a_truncated_or_corrupted_bundle_is_one_clear_error_and_changes_nothing(exported, tmp_path):
    source, bundle = exported
    whole = bundle.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    done = invoke("import", str(truncated), "--db", source)
    assert done.exit_code == 1 and done.stderr.count("\n") == 1
    assert "is not a readable Arena bundle (truncated or corrupted" in done.stderr

    corrupted = tmp_path / "corrupted.zip"
    with zipfile.ZipFile(bundle) as archive, zipfile.ZipFile(corrupted, "w") as out:
        for name in archive.namelist():
            data = archive.read(name)
            out.writestr(name, data.replace(b'"robust": true', b'"robust": false', 1) if name == "runs.json" else data)
    done = invoke("import", str(corrupted), "--db", source)
    assert done.exit_code == 1 and "was modified: runs.json does not match its SHA-256" in done.stderr
    assert _runs(source) == 2  # nothing changed

    not_zip = tmp_path / "notes.zip"
    not_zip.write_bytes(b"hello")
    assert "is not a readable Arena bundle" in invoke("import", str(not_zip), "--db", source).stderr


def test_every_example_kept_lets_the_importer_recheck_each_sample(exported, tmp_path):
    source, _ = exported
    refused = invoke("export", "--all", "--with-examples", "-o", str(tmp_path / "some.zip"), "--db", source)
    assert refused.exit_code == 1 and "runs 1, 2 kept only some adversarial examples" in refused.stderr
    assert not (tmp_path / "some.zip").exists()

    db = f"sqlite:///{tmp_path / 'all.db'}"
    done = invoke("run", "-a", "fgsm", "-d", "standard", "-p", "standard.epochs=2", "--n", "40", "--keep-examples",
                  "all", "--db", db)
    assert done.exit_code == 0, done.output + done.stderr
    bundle = tmp_path / "all.zip"
    assert invoke("export", "--all", "--with-examples", "-o", str(bundle), "--db", db).exit_code == 0
    with zipfile.ZipFile(bundle) as archive:
        (record,) = json.loads(archive.read("runs.json"))
        kept = load(archive.read(record["artifacts"]["examples"]))
    attacked = [s["index"] for s in record["samples"] if s["clean_correct"]]
    assert sorted(kept["index"].tolist()) == sorted(attacked) and len(attacked) > 8

    # A forger who changes one outcome everywhere it is written (sample, example file, accuracy)
    # is caught by classifying that sample's shipped example here.
    found = {}

    def forge(records, files):
        record = records[0]
        name = record["artifacts"]["examples"]
        arrays = {k: v.copy() for k, v in load(files.pop(name)).items()}
        row = len(arrays["index"]) - 1  # the last: never among the 8 a run keeps by default
        sample = record["samples"][int(arrays["index"][row])]
        forged = (sample["label"] + 1) % 10 if sample["robust"] else sample["label"]
        sample.update(adv_pred=forged, robust=forged == sample["label"],
                      success=sample["clean_correct"] and forged != sample["label"])
        arrays["adv_pred"][row] = forged
        record["robustness"]["robust_accuracy"] = sum(s["robust"] for s in record["samples"]) / record["run"]["n"]
        data = save(arrays)
        renamed = f"artifacts/{hashlib.sha256(data).hexdigest()}.safetensors"
        files[renamed] = data
        record["artifacts"]["examples"] = renamed
        found.update(sample=sample["index"], forged=forged)

    report = _refused(_rewrite(bundle, tmp_path / "forged.zip", forge), tmp_path)
    assert f"sample {found['sample']}: its adversarial example is classified as" in report
    assert f"the bundle says {found['forged']}" in report


def test_a_generative_run_travels_with_its_pictures(tmp_path):
    source, fresh = f"sqlite:///{tmp_path / 'g.db'}", f"sqlite:///{tmp_path / 'g-fresh.db'}"
    done = invoke("run", "-g", "uniform", "--samples", "64", "--db", source)
    assert done.exit_code == 0, done.output + done.stderr
    bundle = tmp_path / "generators.zip"
    assert invoke("export", "--all", "-o", str(bundle), "--db", source).exit_code == 0
    imported = invoke("import", str(bundle), "--db", fresh)
    assert imported.exit_code == 0 and "Imported 1 run" in imported.stdout, imported.output + imported.stderr
    board = lambda db: json.loads(invoke("leaderboard", "--track", "generative", "--format", "json",  # noqa: E731
                                         "--db", db).stdout)
    assert board(fresh) == board(source)
    (row,) = json.loads(invoke("results", "--json", "--db", fresh).stdout)
    assert row["origin"] == "generators" and set(row["artifacts"]) == {"samples", "neighbours"}
    assert invoke("db", "check", "--db", fresh).exit_code == 0  # the grids are in this machine's store, intact


@pytest.mark.parametrize("forgery", ["examples left out", "extra field", "no plugins named", "NaN accuracy",
                                     "target is the label"])
def test_forgeries_that_look_whole_are_refused_and_store_nothing(exported, tmp_path, forgery):
    _, bundle = exported

    def forge(records, files):
        record = records[0]
        if forgery == "examples left out":  # the beaten samples claimed robust, their examples dropped
            for sample in record["samples"]:
                if sample["success"]:
                    sample.update(robust=True, success=False, adv_pred=sample["label"])
            record["robustness"]["robust_accuracy"] = sum(s["robust"] for s in record["samples"]) / 40
            files.pop(record["artifacts"].pop("examples"))
        elif forgery == "extra field":
            record["samples"][0]["note"] = "trust me"
        elif forgery == "no plugins named":
            record["run"]["provenance"]["plugins"] = {}
        elif forgery == "NaN accuracy":
            record["robustness"]["robust_accuracy"] = float("nan")
        else:
            record["robustness"]["targeted"] = True
            for sample in record["samples"]:
                sample["target"] = sample["label"]

    report = _refused(_rewrite(bundle, tmp_path / "forged.zip", forge), tmp_path)
    expected = {"examples left out": "but the run kept those of", "extra field": "where the table differs",
                "no plugins named": "its provenance does not name its attack", "NaN accuracy": "NaN is not a number a result may hold",
                "target is the label": "but the host's target for it is"}[forgery]
    assert expected in report


def test_an_import_never_supersedes_a_result_of_this_database(exported, tmp_path):
    source, bundle = exported
    before = json.loads(invoke("results", "--json", "--db", source).stdout)

    def new_key_same_lineage(records, files):
        for record in records:
            record["run"]["key"] = hashlib.sha256(record["run"]["key"].encode()).hexdigest()

    forged = _rewrite(bundle, tmp_path / "lineage.zip", new_key_same_lineage)
    done = invoke("import", str(forged), "--db", source)
    assert done.exit_code == 0 and "2 runs whose key is current here already, kept as they are" in done.stdout
    assert json.loads(invoke("results", "--json", "--db", source).stdout) == before
