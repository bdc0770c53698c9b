"""Result bundles: stored runs carried to another database, checked before they are merged.

``arena export`` writes one zip file: ``manifest.json`` (format, Arena's version, the SHA-256 of
every other file), ``runs.json`` (each run with its result, per-sample outcomes, flags and full
provenance, the SHA-256 of the checkpoint it was computed on) and ``artifacts/...``, the files
the runs kept (adversarial examples, sample grids) under their content's SHA-256.

``arena import`` merges a bundle only after checking it, and refuses it whole, with a report
naming each run and sample, at the first sign of trouble:

- the bundle is a readable zip holding exactly the files its manifest lists, each with its
  SHA-256 (a truncated or corrupted bundle is one clear error, and changes nothing);
- every run's provenance is complete, its plugins are installed here at the versions it names,
  and its dataset here has the content hash it was computed on;
- every per-sample outcome agrees with itself (``robust`` means clean-correct and still
  classified as its label, ``success`` the attack's goal) and with the run's accuracies;
- every shipped adversarial example is the test image it claims to be, lies within the run's
  threat model, and, where the defense's checkpoint is here with the same SHA-256, is
  classified here as the bundle says; so are the clean test images.

Imported runs keep their origin (``provenance["origin"]``: the label given, the bundle's hash
and the run's own): ``arena show`` says so and ``arena leaderboard --origin`` filters by it. A
run imported twice is stored once; a run whose key is current here already is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

FORMAT = "arena-bundle"
VERSION = 1
#: Provenance every exported run must carry (robustness runs also ``checkpoint_sha256``).
REQUIRED_PROVENANCE = ("arena_version", "plugins", "seed", "dataset_hash")
#: Slack on the budget and on stored norms (float32 arithmetic), as the host judges.
TOLERANCE = 1e-5


class BundleRefused(InvalidInputError):
    """A bundle that failed its checks: the message names every run and sample that did."""


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    runs: list[dict[str, Any]]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()


# -- writing ---------------------------------------------------------------------------------


def export(store: Any, run_ids: list[int] | None, target: Path, with_examples: bool = False) -> int:
    """Write the runs ``run_ids`` (None: every current completed run) to the bundle ``target``;
    how many runs it holds. ``with_examples``: every robustness run must have kept the example
    of each attacked sample (``arena run --keep-examples all``), so that all can be re-checked."""
    from .artifacts import UnreadableArtifact, local_path

    if run_ids is None:
        runs = [store.get_run(run.id) for run in store.runs(status="ok")]
    else:
        runs = []
        for run_id in run_ids:
            run = store.get_run(run_id)
            if run is None:
                raise InvalidInputError(f"no run {run_id} in this database (`arena results` lists them)")
            runs.append(run)
    if not runs:
        raise InvalidInputError("nothing to export: no completed run is stored (run `arena run` first)")
    if with_examples:
        partial = [run.id for run in runs if run.robustness is not None
                   and (run.provenance or {}).get("examples_kept") != "all"]
        if partial:
            raise InvalidInputError(f"--with-examples: run{'s' * (len(partial) > 1)} {', '.join(map(str, partial))} "
                                    "kept only some adversarial examples: compute them again with `arena run ... "
                                    "--keep-examples all --force`, or export without --with-examples; nothing was "
                                    "exported")
    records, files = [], {}
    for run in sorted(runs, key=lambda r: r.id):
        record = _record(run)
        for role, stored in (run.artifacts or {}).items():
            try:
                data = local_path(stored).read_bytes()
            except (UnreadableArtifact, OSError) as exc:
                raise InvalidInputError(f"run {run.id}: its {role} file cannot be read ({exc}): nothing was "
                                        "exported") from None
            name = f"artifacts/{hashlib.sha256(data).hexdigest()}{Path(str(stored)).suffix}"
            files[name] = data
            record["artifacts"][role] = name
        records.append(record)
    body = json.dumps(records, sort_keys=True).encode()
    files["runs.json"] = body
    import arena

    manifest = {"format": FORMAT, "version": VERSION, "arena_version": arena.__version__,
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": len(records),
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}}
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    temporary.replace(target)
    return len(records)


def _columns(row: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    import sqlalchemy as sa

    values = {}
    for column in sa.inspect(type(row)).mapper.column_attrs:
        if column.key in skip:
            continue
        value = getattr(row, column.key)
        if isinstance(value, datetime):
            value = {"datetime": value.isoformat()}
        values[column.key] = value
    return values


def _record(run: Any) -> dict[str, Any]:
    record = {"run": _columns(run, ("superseded_by", "artifacts")), "artifacts": {},
              "samples": [_columns(s, ("run_id",)) for s in run.samples]}
    for part in ("robustness", "generative", "result"):
        value = getattr(run, part)
        record[part] = None if value is None else _columns(value, ("run_id", "robust_bits"))
    return record


# -- reading and checking --------------------------------------------------------------------


def read(path: Path) -> Bundle:
    """The bundle at ``path``, checked to be whole and unmodified (one clear error if not)."""
    where = f"{path}"
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InvalidInputError(f"no bundle at {where}: give the file `arena export -o` wrote") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(f"{where} is not a readable Arena bundle (truncated or corrupted: {exc}); nothing "
                                "was imported") from None
    with archive:
        try:
            manifest = json.loads(archive.read("manifest.json"))
            names = [name for name in archive.namelist() if name != "manifest.json"]
            files = {name: archive.read(name) for name in names}
        except KeyError:
            raise InvalidInputError(f"{where} has no manifest.json: it is not an Arena bundle; nothing was "
                                    "imported") from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise InvalidInputError(f"{where} is not a readable Arena bundle (truncated or corrupted: {exc}); "
                                    "nothing was imported") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{where} is not an Arena bundle (its manifest names no {FORMAT!r} format)")
    if manifest.get("version") != VERSION:
        raise InvalidInputError(f"{where} is a bundle of format version {manifest.get('version')!r}; this Arena "
                                f"reads version {VERSION}: upgrade Arena to import it")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != set(files):
        extra = sorted(set(files) - set(listed or {}))
        missing = sorted(set(listed or {}) - set(files))
        raise InvalidInputError(f"{where} was modified: its files do not match its manifest "
                                f"(missing {missing[:3]}, not listed {extra[:3]}); nothing was imported")
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise InvalidInputError(f"{where} was modified: {name} does not match its SHA-256 in the manifest; "
                                    "nothing was imported")
    try:
        runs = json.loads(files["runs.json"], parse_constant=_no_constant)
        if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("run"), dict)
                                                 for r in runs):
            raise ValueError("not a list of runs")
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(f"{where} holds no readable runs.json ({exc}); nothing was imported") from None
    return Bundle(path, manifest, runs, files)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a result may hold")


def verify(bundle: Bundle, host: Any) -> tuple[list[str], int]:
    """Every problem found in the bundle's runs (none: it may be imported), and how many runs
    were re-classified with a checkpoint of this machine."""
    problems: list[str] = []
    reclassified: list[bool] = []
    keys: set[Any] = set()
    for record in bundle.runs:
        run = record["run"]
        name = f"run {run.get('id')} ({str(run.get('key'))[:12]})"
        if run.get("key") in keys:
            problems.append(f"{name}: the bundle holds this key twice")
            continue
        keys.add(run.get("key"))
        try:
            found = _structure(record, bundle) or _verify_run(record, bundle, host, reclassified)
        except Exception as exc:  # whatever a malformed record raises, it is refused, never stored
            found = [f"malformed record ({type(exc).__name__}: {exc})"]
        problems += [f"{name}: {p}" for p in found]
    return problems, sum(reclassified)


def _structure(record: dict[str, Any], bundle: Bundle) -> list[str]:
    """What is wrong with a record's shape: exactly the columns of each table, each of its
    type; provenance as the store requires it; files the bundle holds; the part of its track."""
    from .errors import StoreError
    from .store import GenerativeResult, RobustnessResult, Run, Sample, check_provenance

    problems = []
    parts = {"run": (Run, ("superseded_by", "artifacts")), "robustness": (RobustnessResult, ("run_id", "robust_bits")),
             "generative": (GenerativeResult, ("run_id",))}
    if set(record) != {"run", "artifacts", "samples", "robustness", "generative", "result"}:
        return [f"holds the parts {sorted(record)}, not those of an exported run"]
    track = record["run"].get("track")
    if track not in ("robustness", "generative") or record.get(track) is None or record.get("result") is not None \
            or any(record.get(other) is not None for other in ("robustness", "generative") if other != track):
        return [f"its track {track!r} and its result parts do not match (robustness and generative runs are "
                "imported)"]
    rows = [(name, record[name], table, skip) for name, (table, skip) in parts.items() if record.get(name) is not None]
    rows += [(f"sample {i}", sample, Sample, ("run_id",)) for i, sample in enumerate(record["samples"])]
    for name, values, table, skip in rows:
        problems += _columns_problems(name, values, table, skip)
    if problems:
        return problems
    try:
        check_provenance(record["run"].get("provenance"))
    except StoreError as exc:
        return [str(exc)]
    artifacts = record.get("artifacts") or {}
    if not isinstance(artifacts, dict) or any(name not in bundle.files or not str(name).startswith("artifacts/")
                                              for name in artifacts.values()):
        return ["names files the bundle does not hold"]
    return []


def _columns_problems(name: str, values: Any, table: Any, skip: tuple[str, ...]) -> list[str]:
    import math

    import sqlalchemy as sa

    if not isinstance(values, dict):
        return [f"{name} is not a record"]
    columns = {c.key: c.columns[0] for c in sa.inspect(table).mapper.column_attrs if c.key not in skip}
    if set(values) != set(columns):
        return [f"{name} has the fields {sorted(set(values) ^ set(columns))} where the table differs"]
    problems = []
    for key, column in columns.items():
        value = values[key]
        if value is None:
            if not column.nullable and not column.primary_key:
                problems.append(f"{name}: {key} is missing")
            continue
        try:
            wanted = column.type.python_type
        except NotImplementedError:
            continue
        if key == "created_at":
            ok = isinstance(value, dict) and set(value) == {"datetime"}
        elif wanted is bool:
            ok = isinstance(value, bool)
        elif wanted is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif wanted is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, wanted)
        if not ok:
            problems.append(f"{name}: {key} holds {json.dumps(value)[:60]}, not a {wanted.__name__}")
    return problems


def _verify_run(record: dict[str, Any], bundle: Bundle, host: Any, reclassified: list[bool]) -> list[str]:
    from .errors import ArenaError

    run, result = record["run"], record.get("robustness")
    provenance = run.get("provenance") or {}
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    if result is not None and not provenance.get("checkpoint_sha256"):
        missing.append("checkpoint_sha256")
    if missing:
        return [f"incomplete provenance: no {', '.join(missing)}"]
    plugins = provenance.get("plugins") or {}
    problems = _named(plugins, record, run) or _installed(plugins, host.registry)
    if problems:
        return problems
    if run.get("status") != "ok":
        return ["only completed runs are imported"]
    try:
        data = host.dataset(run["dataset"])
    except ArenaError as exc:
        return [f"its dataset cannot be loaded here ({exc})"]
    if data.content_hash != run["dataset_hash"]:
        return [f"the dataset {run['dataset']!r} here is other data (content hash {data.content_hash[:12]}, the run "
                f"used {str(run['dataset_hash'])[:12]})"]
    if result is None:
        return []
    return _verify_robustness(record, bundle, host, data, reclassified)


def _named(plugins: Any, record: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """The provenance names each plugin of the run, as its result does."""
    roles = ("attack", "defense") if record.get("robustness") is not None else ("generator",)
    part = record.get("robustness") or record.get("generative") or {}
    problems = []
    for role in (*roles, "dataset"):
        source = plugins.get(role) if isinstance(plugins, dict) else None
        if not isinstance(source, dict):
            problems.append(f"its provenance does not name its {role}")
            continue
        named = (source.get("name"), source.get("package"), source.get("version"))
        claimed = (run.get("dataset"),) if role == "dataset" else (
            part.get(role), part.get(f"{role}_package"), part.get(f"{role}_version"))
        if named[: len(claimed)] != claimed:
            problems.append(f"its provenance names the {role} {named}, its result {claimed}")
    return problems


def _installed(plugins: dict[str, Any], registry: Any) -> list[str]:
    problems = []
    for role, source in plugins.items():
        if not isinstance(source, dict) or role not in ("attack", "defense", "generator", "dataset"):
            continue
        name, package, version = source.get("name"), source.get("package"), source.get("version")
        info = registry.plugins.get(role, {}).get(name)
        if info is None:
            problems.append(f"needs the {role} {name!r} ({package} {version}), which is not installed here: "
                            f"pip install '{package}=={version}'")
        elif (info.source.package, info.source.version) != (package, version):
            problems.append(f"needs the {role} {name!r} from {package} {version}; here it is {info.source}: "
                            f"pip install '{package}=={version}'")
    return problems


def _verify_robustness(record: dict[str, Any], bundle: Bundle, host: Any, data: Any,
                       reclassified: list[bool]) -> list[str]:
    import torch

    from .judging import choose_targets

    run, result, samples = record["run"], record["robustness"], record["samples"]
    problems = []
    n = run["n"]
    if n < 1 or n > len(data.splits.y_test) or sorted(s["index"] for s in samples) != list(range(n)):
        return [f"its samples are not the test points 0..{n - 1} of the dataset"]
    by_index = {s["index"]: s for s in samples}
    y = data.splits.y_test[:n].cpu()
    targets = choose_targets(y, data.plugin.classes, run["seed"]).tolist() if result["targeted"] else [None] * n
    for s in samples:
        i, label = s["index"], s["label"]
        if s["target"] != targets[i]:
            problems.append(f"sample {i}: target {s['target']}, but the host's target for it is {targets[i]}")
        goal = (s["adv_pred"] == s["target"]) if result["targeted"] else (s["adv_pred"] != label)
        expected = {"label": int(y[i]), "clean_correct": s["clean_pred"] == label,
                    "robust": s["clean_pred"] == label and s["adv_pred"] == label,
                    "success": s["clean_pred"] == label and goal}
        for column, value in expected.items():
            if s[column] != value:
                problems.append(f"sample {i}: {column} is {json.dumps(s[column])}, but its outcomes say "
                                f"{json.dumps(value)} (clean prediction {s['clean_pred']}, adversarial prediction "
                                f"{s['adv_pred']}, label {label})")
    correct = sum(s["clean_correct"] for s in samples)
    for column, value in (("robust_accuracy", sum(s["robust"] for s in samples) / n), ("clean_accuracy", correct / n),
                          ("attack_success_rate", sum(s["success"] for s in samples) / correct if correct else None)):
        if value is None:
            continue
        if result.get(column) is None or abs(result[column] - value) > 1e-9:
            problems.append(f"{column} is {result.get(column)}, but its samples give {value:.6g}")
    model = _local_model(record, host, data)
    reclassified.append(model is not None)
    examples = _examples(record, bundle)
    if isinstance(examples, str):
        return problems + [examples]
    # The examples the run kept are known from its outcomes: every attacked sample's with
    # --keep-examples all, else the first EXAMPLES_KEPT, successful ones first. None may be left out.
    from .judging import EXAMPLES_KEPT

    attacked = sorted((s["index"] for s in samples if s["clean_correct"]),
                      key=lambda i: (not by_index[i]["success"], i))
    expected = attacked if (run.get("provenance") or {}).get("examples_kept") == "all" else attacked[:EXAMPLES_KEPT]
    shipped = sorted(int(i) for i in examples["index"].tolist()) if examples else []
    expected = sorted(expected)
    if shipped != expected:
        return problems + [f"ships the adversarial examples of samples {shipped[:10]}, but the run kept those of "
                           f"{expected[:10]} (every example a run kept goes with it)"]
    if model is not None:
        with torch.no_grad():
            clean = model(data.splits.x_test[:n]).argmax(1).cpu()
        for i in range(n):
            if int(clean[i]) != by_index[i]["clean_pred"]:
                problems.append(f"sample {i}: classified as {int(clean[i])} here, the bundle says {by_index[i]['clean_pred']}")
    problems += _verify_examples(examples, result, by_index, data, model)
    return problems


def _examples(record: dict[str, Any], bundle: Bundle) -> dict[str, Any] | str:
    name = record.get("artifacts", {}).get("examples")
    if name is None:
        return {}
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(bundle.files[name])
    except (KeyError, SafetensorError, ValueError) as exc:
        return f"its examples file {name} cannot be read ({exc})"


def _verify_examples(examples: dict[str, Any], result: dict[str, Any], by_index: dict[int, Any], data: Any,
                     model: Any) -> list[str]:
    import torch

    from .artifacts import EXAMPLE_ARRAYS

    if not examples:
        return []
    if any(k not in examples for k in EXAMPLE_ARRAYS):
        return ["its examples file lacks some of " + ", ".join(EXAMPLE_ARRAYS)]
    problems = []
    count = len(examples["index"])
    if any(examples[k].shape[:1] != (count,) for k in EXAMPLE_ARRAYS) or examples["x_adv"].dtype != "float32" \
            or examples["x"].dtype != "float32":
        return ["its examples file holds arrays of other lengths or types than the examples it lists"]
    x_adv = torch.from_numpy(examples["x_adv"].copy())
    x_shipped = torch.from_numpy(examples["x"].copy())
    if not bool(torch.isfinite(x_adv).all()):
        return ["its examples file holds NaN or infinite pixels"]
    predictions = None
    if model is not None and len(x_adv):
        with torch.no_grad():
            predictions = model(x_adv.to(data.splits.x_test.device)).argmax(1).cpu()
    for row, index in enumerate(examples["index"].tolist()):
        sample = by_index.get(int(index))
        where = f"sample {int(index)}"
        if sample is None:
            problems.append(f"{where}: an adversarial example of no stored sample")
            continue
        x = data.splits.x_test[int(index)].cpu()
        if x_shipped[row].shape != x.shape or not torch.equal(x_shipped[row], x):
            problems.append(f"{where}: the example's clean image is not test image {int(index)} of the dataset")
            continue
        delta = (x_adv[row] - x).flatten()
        size = float(delta.abs().max()) if result["norm"] == "linf" else float(delta.norm())
        low, high = float(x_adv[row].min()), float(x_adv[row].max())
        if size > result["eps"] + TOLERANCE or low < -TOLERANCE or high > 1 + TOLERANCE:
            problems.append(f"{where}: the adversarial example leaves the threat model ({result['norm']} {size:.6g} "
                            f"for eps {result['eps']:g}, pixels in [{low:.4g}, {high:.4g}])")
            continue
        if abs(size - sample[result["norm"]]) > TOLERANCE:
            problems.append(f"{where}: the example's {result['norm']} perturbation is {size:.6g}, the sample records "
                            f"{sample[result['norm']]:.6g}")
        if int(examples["adv_pred"][row]) != sample["adv_pred"]:
            problems.append(f"{where}: the example file says prediction {int(examples['adv_pred'][row])}, the sample "
                            f"{sample['adv_pred']}")
        if predictions is not None and int(predictions[row]) != sample["adv_pred"]:
            problems.append(f"{where}: its adversarial example is classified as {int(predictions[row])} here, the "
                            f"bundle says {sample['adv_pred']}")
    return problems


def _local_model(record: dict[str, Any], host: Any, data: Any) -> Any:
    """The defense model the run was computed on, if this machine's model cache holds a
    checkpoint with the same SHA-256 (deterministic defenses only); None otherwise."""
    run, result = record["run"], record["robustness"]
    try:
        info = host.registry.get("defense", result["defense"])
        _, _, key = host.model_identity(info, dict(result["defense_params"] or {}), data, run["seed"])
    except Exception:  # no such defense here, or parameters it no longer takes
        return None
    cached = host.cache.record(key)
    wanted = (run.get("provenance") or {}).get("checkpoint_sha256")
    if key != result["defense_key"] or not cached or cached.get("sha256") != wanted \
            or not host.cache.weights_path(key).exists():
        return None
    built = host.plugin_model(info, dict(result["defense_params"] or {}), data, run["seed"])
    if built.sha256 != wanted or (built.probe is not None and built.probe.randomized):
        return None
    return built.model


# -- merging ---------------------------------------------------------------------------------


@dataclass
class Imported:
    stored: list[int] = field(default_factory=list)
    already: int = 0
    kept_local: list[str] = field(default_factory=list)
    checked: int = 0


def merge(store: Any, bundle: Bundle, origin: str, home: Path) -> Imported:
    """Store the (verified) runs of ``bundle`` with their origin; what was stored and skipped.

    A run whose key or lineage has a current run here is left out (an import never supersedes
    a result of this database); every run is built before the first is stored."""
    from sqlalchemy import or_, select

    from .artifact_store import keep_file
    from .store import GenerativeResult, RobustnessResult, Run, Sample

    done = Imported()
    ready = []
    for record in bundle.runs:
        fields = dict(record["run"])
        exported_id = fields.pop("id", None)
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        with store.session() as session:
            current = session.scalars(select(Run).where(
                Run.superseded_by.is_(None),
                or_(Run.key == fields["key"], *([Run.lineage == fields["lineage"]] if fields.get("lineage") else [])),
            )).all()
        if current:
            mine = [((run.provenance or {}).get("origin") or {}).get("run_sha256") for run in current]
            if digest in mine:
                done.already += 1
            else:
                done.kept_local.append(fields["key"])
            continue
        fields["created_at"] = datetime.fromisoformat(fields["created_at"]["datetime"])
        run = Run(**fields)
        run.provenance = {**(run.provenance or {}), "origin": {
            "label": origin, "bundle_sha256": bundle.digest, "run_sha256": digest, "exported_run_id": exported_id,
            "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
        if record.get("robustness") is not None:
            run.robustness = RobustnessResult(**record["robustness"])
        if record.get("generative") is not None:
            run.generative = GenerativeResult(**record["generative"])
        run.samples = [Sample(**sample) for sample in record["samples"]]
        ready.append((run, record.get("artifacts") or {}))
    for run, artifacts in ready:
        run.artifacts = {role: keep_file(home, Path(name).suffix,
                                         lambda path, data=bundle.files[name]: Path(path).write_bytes(data))
                         for role, name in artifacts.items()}
        done.stored.append(store.save_run(run).id)
    return done
