"""The results database schema (SQLAlchemy 2.x ORM). Change it only through a migration.

Every column but the keys has a checked type (:mod:`arena.store.values`): a stored value that
cannot be decoded is read as a marker the store recognises, never as an exception mid-query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .values import (
    CheckedBinary,
    CheckedBoolean,
    CheckedDateTime,
    CheckedFloat,
    CheckedInteger,
    CheckedJSON,
    CheckedString,
    CheckedText,
    evaluation_record,
    flag_list,
)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """One evaluation: an attack against a defense, or a generator scored, at one setting."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: SHA-256 of everything that determines the result, the plugins' code included; re-running
    #: the same command reuses it. Unique among current runs (``superseded_by`` NULL).
    key: Mapped[str] = mapped_column(CheckedString(64))
    #: SHA-256 of the same identity without the plugins' code (what ``key`` was before code was
    #: part of it): a new result of a lineage supersedes the current one, whatever code made it.
    lineage: Mapped[str | None] = mapped_column(CheckedString(64), nullable=True)
    #: The run that replaced this one (``arena run --force``, or a result of changed code); NULL
    #: for a current run. Superseded runs are history: kept, never reused or ranked.
    superseded_by: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    track: Mapped[str] = mapped_column(CheckedString(16))
    #: "ok", "error" (a plugin raised; traceback in ``error``) or "refused" (the host refused it).
    status: Mapped[str] = mapped_column(CheckedString(16))
    created_at: Mapped[datetime] = mapped_column(CheckedDateTime(timezone=True))
    dataset: Mapped[str] = mapped_column(CheckedString(100))
    dataset_hash: Mapped[str] = mapped_column(CheckedString(64))
    seed: Mapped[int] = mapped_column(CheckedInteger)
    n: Mapped[int] = mapped_column(CheckedInteger)
    device: Mapped[str] = mapped_column(CheckedString(64))
    duration_s: Mapped[float] = mapped_column(CheckedFloat)
    flags: Mapped[list[Any]] = mapped_column(CheckedJSON(list, valid=flag_list), default=list)
    provenance: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict), default=dict)
    #: Files written for this run, by role (e.g. ``{"examples": "/path/KEY.safetensors"}``).
    artifacts: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict), default=dict)
    error: Mapped[str | None] = mapped_column(CheckedText, nullable=True)

    robustness: Mapped["RobustnessResult | None"] = relationship(
        back_populates="run", cascade="all, delete-orphan", uselist=False, lazy="joined"
    )
    generative: Mapped["GenerativeResult | None"] = relationship(
        back_populates="run", cascade="all, delete-orphan", uselist=False, lazy="joined"
    )
    #: The result of a track that keeps no table of its own (:class:`TrackResult`).
    result: Mapped["TrackResult | None"] = relationship(
        back_populates="run", cascade="all, delete-orphan", uselist=False, lazy="joined"
    )
    samples: Mapped[list["Sample"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Sample.index"
    )

    # AUTOINCREMENT: the id of a replaced failed run is never handed out again.
    __table_args__ = (
        Index("ix_runs_track_dataset", "track", "dataset"),
        Index("ix_runs_lineage", "lineage"),
        Index("ux_runs_current_key", "key", unique=True, sqlite_where=text("superseded_by IS NULL"),
              postgresql_where=text("superseded_by IS NULL")),
        {"sqlite_autoincrement": True},
    )


class RobustnessResult(Base):
    """The attack-versus-defense part of a run: who, under which threat model, and the scores."""

    __tablename__ = "robustness_results"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attack: Mapped[str] = mapped_column(CheckedString(100))
    attack_package: Mapped[str] = mapped_column(CheckedString(200))
    attack_version: Mapped[str] = mapped_column(CheckedString(100))
    attack_access: Mapped[str] = mapped_column(CheckedString(32))
    attack_params: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict))
    defense: Mapped[str] = mapped_column(CheckedString(100))
    defense_package: Mapped[str] = mapped_column(CheckedString(200))
    defense_version: Mapped[str] = mapped_column(CheckedString(100))
    defense_params: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict))
    #: SHA-256 identifying the trained defense model (plugin, version, params, dataset, seed;
    #: since schema 0005 the plugin's code too).
    defense_key: Mapped[str] = mapped_column(CheckedString(64))
    norm: Mapped[str] = mapped_column(CheckedString(8))
    eps: Mapped[float] = mapped_column(CheckedFloat)
    targeted: Mapped[bool] = mapped_column(CheckedBoolean)
    query_budget: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    clean_accuracy: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    robust_accuracy: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    attack_success_rate: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    mean_linf: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    median_linf: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    mean_l2: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    median_l2: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    queries_mean: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    queries_max: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    forward_passes: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    backward_passes: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    #: How the host evaluated the pairing (see :mod:`arena.evaluation`): ``mode`` ("plain" or
    #: "adaptive"), ``bpda``, ``eot_samples``, ``decision_draws``. NULL in results stored before
    #: evaluations were recorded, which were all plain.
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(
        CheckedJSON(dict, nullable=True, valid=evaluation_record), nullable=True
    )
    #: The samples' ``robust`` outcomes packed into bits (``numpy.packbits``, test point ``i`` at
    #: bit ``i``), for runs whose samples are the test points 0..n-1: what the leaderboard reads,
    #: in one small value per run instead of ``n`` sample rows. The store fills it in on saving.
    robust_bits: Mapped[bytes | None] = mapped_column(CheckedBinary, nullable=True)

    run: Mapped[Run] = relationship(back_populates="robustness")

    __table_args__ = (
        Index("ix_robustness_threat", "norm", "eps", "targeted"),
        Index("ix_robustness_defense_key", "defense_key"),
    )


class Sample(Base):
    """The outcome for one evaluation point (by its index in the dataset's test split)."""

    __tablename__ = "samples"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(CheckedInteger, primary_key=True)
    label: Mapped[int] = mapped_column(CheckedInteger)
    target: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    clean_pred: Mapped[int] = mapped_column(CheckedInteger)
    adv_pred: Mapped[int] = mapped_column(CheckedInteger)
    clean_correct: Mapped[bool] = mapped_column(CheckedBoolean)
    #: The attack reached its goal (a wrong class, or the target class in targeted mode).
    success: Mapped[bool] = mapped_column(CheckedBoolean)
    #: Correctly classified after the attack.
    robust: Mapped[bool] = mapped_column(CheckedBoolean)
    linf: Mapped[float] = mapped_column(CheckedFloat)
    l2: Mapped[float] = mapped_column(CheckedFloat)
    queries: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)

    run: Mapped[Run] = relationship(back_populates="samples")



class GenerativeResult(Base):
    """The generative part of a run (``track = "generative"``): which generator, its likelihood
    on the test split, and the quality of its samples under the reference classifier.

    Sample-quality scores are only comparable between rows with the same
    ``classifier_sha256`` (the reference classifier's weights) and ``reference_n``.
    """

    __tablename__ = "generative_results"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    generator: Mapped[str] = mapped_column(CheckedString(100))
    generator_package: Mapped[str] = mapped_column(CheckedString(200))
    generator_version: Mapped[str] = mapped_column(CheckedString(100))
    generator_params: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict))
    #: SHA-256 identifying the trained generator (plugin, version, params, dataset, seed; since
    #: schema 0005 the plugin's code too).
    model_key: Mapped[str] = mapped_column(CheckedString(64))
    #: "exact", "bound" or None (no likelihood).
    likelihood_kind: Mapped[str | None] = mapped_column(CheckedString(16), nullable=True)
    #: Test-split NLL in bits/dim: the tightest of ``likelihoods`` (all exact or lower bounds).
    bits_per_dim: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: Every estimate in bits/dim by name, e.g. ``{"elbo": 2.1, "iwae-100": 2.0}``.
    likelihoods: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict))
    #: log2(levels): a uniform model over the dataset's pixel levels.
    uniform_bits_per_dim: Mapped[float] = mapped_column(CheckedFloat)
    likelihood_n: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    samples_n: Mapped[int] = mapped_column(CheckedInteger)
    #: Real images the samples are compared with (the training split).
    reference_n: Mapped[int] = mapped_column(CheckedInteger)
    classifier_sha256: Mapped[str] = mapped_column(CheckedString(64))
    classifier_accuracy: Mapped[float] = mapped_column(CheckedFloat)
    fid: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    fid_low: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    fid_high: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    kid: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    precision: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    recall: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    density: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    coverage: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    inception_score: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    train_seconds: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    sample_seconds: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    # Schema 0007 (NULL in older rows): KID's spread over subsets; every score against the test
    # split too; memorisation; a noise baseline; the reference classifier's model key.
    kid_std: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: Real images of the test split the ``*_test`` scores compare with.
    test_n: Mapped[int | None] = mapped_column(CheckedInteger, nullable=True)
    fid_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    fid_test_low: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    fid_test_high: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    kid_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    kid_test_std: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    precision_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    recall_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    density_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    coverage_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: Bits/dim on as many training images as the test split has (the first ones): the
    #: train-vs-test likelihood gap of a likelihood model.
    bits_per_dim_train: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: Share of samples that are near-copies of a training image (Alaa et al. 2022's authenticity
    #: test, see :class:`arena.generative_metrics.Authenticity`), in the reference classifier's
    #: feature space and in pixel space; ``heldout_*``: the same share for the test images.
    memorised: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    memorised_pixels: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: The same shares against the test split: samples that copy test images.
    test_copies: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    test_copies_pixels: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    heldout_memorised: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    heldout_memorised_pixels: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: FID against the test split of as many uniform-noise images on the pixel levels.
    noise_fid_test: Mapped[float | None] = mapped_column(CheckedFloat, nullable=True)
    #: The reference classifier's model key (its recipe, dataset and seed): what identifies the
    #: scores' feature space; ``classifier_sha256`` records its checkpoint's bytes.
    classifier_key: Mapped[str | None] = mapped_column(CheckedString(64), nullable=True)

    run: Mapped[Run] = relationship(back_populates="generative")

    __table_args__ = (
        Index("ix_generative_classifier", "classifier_sha256"),
        Index("ix_generative_model_key", "model_key"),
        Index("ix_generative_classifier_key", "classifier_key"),
    )


class TrackResult(Base):
    """The result of a run of a track registered through ``register_tracks`` that keeps no
    table of its own (schema 0006): what was evaluated (``subject``: plugins, model keys, their
    settings) and what was measured (``metrics``: numbers, or small JSON values), as the track
    defines them. The track reads them back through its ``row``."""

    __tablename__ = "track_results"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    subject: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict))
    metrics: Mapped[dict[str, Any]] = mapped_column(CheckedJSON(dict))

    run: Mapped[Run] = relationship(back_populates="result")
