"""What each job kind keeps in its row's `config` and `result` JSON, as pydantic models.

Written through `store.jobs.create_job` / `set_result`, which validate against the kind's model
(`for_write_config` / `for_write_result`): a wrong type or an unknown field is refused, naming the kind and the
field, and nothing is written. Read through `job_config` / `job_result` / `config_as` (or `read_payload` on a
config dict, as `engine.jobctx.JobContext.config_as` does), which validate leniently: a row an older version wrote
still loads: a field it lacked takes its default, a key it wrote that this version no longer
knows is kept (`extra="allow"`, in `model_extra`). A field the engine cannot do without is checked where it is
needed (`Payload.require`), so a row that lacks it fails its job with the field's name.

The train config nests the run config (`engine.train.config.RunConfig`'s JSON dump) as a plain dict: the store never
imports the engine, and the engine parses it with its own schema. Kinds with no model here (test probes) are stored
as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from store.errors import TunedeckError

P = TypeVar("P", bound="Payload")
WRITE = {"write": True}


class PayloadError(TunedeckError):
    """A job's config or result does not fit its kind's model; the message names the kind and the field."""


class Payload(BaseModel):
    """Base of every payload: lenient on read (unknown keys kept), strict on write (unknown keys refused)."""

    model_config = ConfigDict(extra="allow", defer_build=True)  # schemas built on first use: imports stay cheap
    _where: str = PrivateAttr("")  # how messages name the payload: "job 7 (merge) config"

    @model_validator(mode="after")
    def _no_unknown_on_write(self, info: ValidationInfo) -> Payload:
        if info.context and info.context.get("write") and self.model_extra:
            self.check_extra(self.model_extra)
        return self

    def check_extra(self, extra: dict[str, Any]) -> None:
        """Refuse keys this model does not name (on write); a model may allow some (see TrainResult)."""
        names = ", ".join(repr(k) for k in sorted(extra))
        raise ValueError(f"unknown field {names} (the fields are {', '.join(type(self).model_fields)})")

    def require(self, *names: str) -> None:
        """Raise PayloadError unless each field in `names` is set (not None, not empty)."""
        missing = [n for n in names if getattr(self, n, None) in (None, "", [], {})]
        if missing:
            raise PayloadError(f"{self._where or type(self).__name__}: {', '.join(missing)} missing; queue the job "
                               "again")


class Part(BaseModel):
    """A nested record (a merge input, a sweep row...): typed fields, other keys kept as they are."""

    model_config = ConfigDict(extra="allow", defer_build=True)  # schemas built on first use: imports stay cheap


# ----------------------------------------------------------------------------------------------------- configs


class JobConfig(Payload):
    """Every kind's config: the project it belongs to (set by `engine.jobqueue.queue_job` and the queues)."""

    project_id: int | None = None

    @property
    def project(self) -> int:
        """`project_id`, which every queue sets; PayloadError for a row without it."""
        self.require("project_id")
        return int(self.project_id)  # type: ignore[arg-type]


class ResultBase(Payload):
    """Every kind's result: the engine process's peak resident memory, recorded as any job ends."""

    peak_rss_mb: float | None = None


class SelftestConfig(JobConfig):
    """`selftest`: a diagnostic job that ticks for a while (exercises runners, cancel and kill handling)."""

    steps: int = 10  # ticks
    seconds: float = 1.0  # total duration of the ticks
    fail_at: int | None = None  # the tick at which to fail on purpose
    report_env: list[str] = Field(default_factory=list)  # variables whose values the job records in its result


class SelftestResult(ResultBase):
    steps: int | None = None  # ticks done
    env: dict[str, str | None] | None = None  # the job process's values of the config's `report_env`


class DatasetImportConfig(JobConfig):
    """`dataset-import`: a source read, normalized, deduplicated and split into a snapshot under datasets/<id>.
    Unset options take the importer's defaults (engine.datasets.importer.DEFAULTS)."""

    source: str | None = None  # a local path (absolute) or a hub id
    name: str | None = None  # the dataset's name in the project
    format: str | None = None  # auto, alpaca, chat, sharegpt, input_output, preference, kto, text
    val_fraction: float | None = None  # share of rows held out for validation
    seed: int | None = None  # the split's seed
    dedup: str | None = None  # none, exact or near
    near_threshold: float | None = None  # Jaccard similarity above which rows are near-duplicates
    on_error: str | None = None  # fail (the first bad record stops the import) or skip
    tokenizer: str | None = None  # a model folder, .gguf or hub id whose tokenizer counts tokens
    max_length: int | None = None  # token length above which the report flags rows
    token_sample: int | None = None  # length statistics from an even sample of this many rows (None: all)


class DatasetImportResult(ResultBase):
    dataset_id: int | None = None  # the new datasets row
    name: str | None = None


class TrainConfig(JobConfig):
    """`train`: one training run. `run` is the run config (RunConfig's JSON dump; the engine parses it), the rest is
    what the queue resolved so the engine needs no lookups: the dataset snapshot and the model to load."""

    run: dict[str, Any] = Field(default_factory=dict)  # engine.train.config.RunConfig.model_dump(mode="json")
    run_yaml: str = ""  # the same config as the YAML the user sees and exports
    dataset_id: int | None = None
    dataset_path: str | None = None  # the snapshot folder (datasets/<id>) holding train.jsonl and val.jsonl
    dataset_hash: str | None = None  # the snapshot's content hash, kept with the trained artifact
    model_path: str | None = None  # a model folder or a hub id
    model_artifact_id: int | None = None  # the model artifact trained on, when it is one (the lineage's parent)
    reward_file: str | None = None  # GRPO: the user's reward file, resolved to an absolute path
    reward_model_path: str | None = None  # GRPO: the reward-model artifact's folder
    reward_model_artifact_id: int | None = None
    cluster: dict[str, Any] | None = None  # a SLURM run's options (engine.cluster.slurm.ClusterOptions.to_config())


class TrainResult(ResultBase):
    """`train`: the speed choices (as the run starts), the GPU memory estimate and peak, then what it made and its
    final evaluation. Besides eval_loss/eval_perplexity, an objective's own final metrics (engine.train.objectives.
    FINAL_EVAL: eval_rewards/margins, eval_accuracy...) are extra keys named eval_*, each a number."""

    attn_implementation: str | None = None
    optimizer: str | None = None
    packing: bool | None = None
    liger_kernel: bool | None = None
    torch_compile: bool | None = None
    gpu_estimate: dict[str, Any] | None = None  # engine.gpu.calibrate.compact_estimate: totals in MiB, settings
    gpu_peak_mb: float | None = None  # measured peak GPU memory (MiB)
    artifact_id: int | None = None  # the adapter, model or reward model it saved
    steps: int | None = None  # optimizer steps done
    processes: int | None = None  # training processes (world size)
    eval_loss: float | None = None
    eval_perplexity: float | None = None

    def check_extra(self, extra: dict[str, Any]) -> None:
        bad = {k: v for k, v in extra.items()
               if not k.startswith("eval_") or isinstance(v, bool) or not isinstance(v, int | float)}
        if bad:
            names = ", ".join(f"{k!r} = {v!r}" for k, v in sorted(bad.items()))
            raise ValueError(f"unknown field {names} (the fields are {', '.join(type(self).model_fields)}, and "
                             "final metrics named eval_* with a number)")


class MergeConfig(JobConfig):
    """`merge`: fold a LoRA adapter into its base model."""

    artifact_id: int | None = None  # the adapter artifact
    adapter_path: str | None = None
    base_path: str | None = None  # the base model folder the adapter was trained on
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # the merged model's weights
    method: str = "lora"  # how the adapter was trained (lora, qlora): a QLoRA adapter merges into the full base
    name: str = ""  # the merged artifact's name


class MergeSource(Part):
    """A merge-models input or base: where it is and what it is."""

    label: str = ""  # how messages name it
    path: str = ""
    kind: Literal["model", "adapter"] = "model"
    artifact_id: int | None = None


class MergeModelsConfig(JobConfig):
    """`merge-models`: combine several full models, or several LoRA adapters of one base, into one model."""

    method: str | None = None  # linear, slerp, ties, dare_ties, dare_linear (engine.merge.methods.METHODS)
    base: MergeSource | None = None
    inputs: list[MergeSource] = Field(default_factory=list)
    input_kind: Literal["model", "adapter"] = "model"
    weights: list[float] = Field(default_factory=list)  # one per input; slerp: [t]
    density: float | None = None  # ties/dare: the fraction of each task vector kept
    seed: int = 0  # dare's random drop
    name: str = ""


class MergeResult(ResultBase):
    """`merge` and `merge-models`: the merged model's artifact and what making it cost."""

    artifact_id: int | None = None
    path: str | None = None
    seconds: float | None = None
    tensors: int | None = None  # merge-models: tensors written


class ConvertConfig(JobConfig):
    """`convert`: a model, merged model or adapter artifact to GGUF with llama.cpp's converter, then quants."""

    artifact_id: int | None = None
    source_path: str | None = None  # the model (or adapter) folder
    source_kind: str | None = None  # the artifact's kind: model, merged or adapter
    outtype: str = "f16"  # f16, bf16 or f32
    quants: list[str] = Field(default_factory=list)  # quant types to make from the converted GGUF
    pre_tokenizer: str | None = None  # forced BPE pre-tokenizer name
    name: str | None = None  # the output files' stem (default: the source folder's name)
    base_path: str | None = None  # an adapter's base model folder (its converter needs the config)


class QuantizeConfig(JobConfig):
    """`quantize`: a GGUF artifact to one or more quant types."""

    artifact_id: int | None = None
    source_path: str | None = None  # the GGUF file
    quants: list[str] = Field(default_factory=list)
    source_model: str | None = None  # the HF folder it came from: its tokenizer feeds the perplexity check
    name: str | None = None  # the output files' stem


class QuantOut(Part):
    """One quant a convert or quantize job made."""

    artifact_id: int | None = None
    type: str = ""
    path: str = ""
    fidelity: str | None = None  # pass, warn or fail (None: no perplexity check)
    fallback: int = 0  # tensors that fell back from a k-quant
    delta: float | None = None  # perplexity change against the parent
    limit: float | None = None
    warn_limit: float | None = None


class GgufResult(ResultBase):
    """`convert` and `quantize`: the GGUF (convert) with its fidelity badge, and the quants."""

    artifact_id: int | None = None
    path: str | None = None
    fidelity: str | None = None  # pass, warn or fail
    quants: list[QuantOut] = Field(default_factory=list)


class EvalFeatures(Part):
    """How dataset rows become scored tokens (the training run's own, when the model comes from one)."""

    max_length: int = 2048
    assistant_only_loss: bool = True
    from_run: int | None = None


class SweepEntry(Part):
    type: str = ""  # f16, q8_0...
    path: str = ""
    artifact_id: int | None = None


class EvalConfig(JobConfig):
    """`eval`: perplexity on a dataset split, a forgetting check against a base, a quant sweep, lm-eval tasks."""

    artifact_id: int | None = None
    model_kind: Literal["hf", "gguf"] = "hf"
    model_path: str | None = None
    adapter_base: str | None = None  # an adapter's base model folder
    tokenizer_dir: str | None = None  # the folder whose tokenizer renders the dataset's chats
    split: Literal["train", "val"] = "val"
    features: EvalFeatures | None = None
    tasks: list[str] = Field(default_factory=list)  # lm-evaluation-harness task names
    dataset_id: int | None = None
    dataset_name: str | None = None
    dataset_path: str | None = None
    base_kind: Literal["hf", "gguf"] | None = None  # the model compared with (--compare)
    base_path: str | None = None
    base_label: str | None = None
    sweep: list[SweepEntry] = Field(default_factory=list)  # the GGUFs of a quant sweep, the reference first


class Forgetting(Part):
    base: str = ""
    base_label: str = ""
    perplexity: float | None = None  # general text, this model
    base_perplexity: float | None = None
    change: float | None = None  # relative
    limit: float | None = None
    degraded: bool = False


class SweepRow(Part):
    type: str = ""
    artifact_id: int | None = None
    size: int | None = None  # bytes
    perplexity: float | None = None
    tokens_per_s: float | None = None
    delta_to_f16: float | None = None


class LmEvalTask(Part):
    task: str = ""
    status: str = ""
    reason: str | None = None


class EvalResult(ResultBase):
    """`eval`: what was scored (each section present only when asked for); also appended to the artifact's evals."""

    model: str | None = None
    model_kind: str | None = None
    dataset: dict[str, Any] | None = None  # id, name, split, rows, features, perplexity, tokens, backend...
    forgetting: Forgetting | None = None
    sweep: list[SweepRow] | None = None
    lm_eval: list[LmEvalTask] | None = None


class PushConfig(JobConfig):
    """`push`: upload an artifact's file or folder to the Hugging Face Hub."""

    artifact_id: int | None = None
    path: str | None = None
    repo_id: str | None = None  # org/name
    private: bool = False
    name: str | None = None  # the artifact's name, in the commit message


class PushResult(ResultBase):
    repo_url: str | None = None
    commit: str | None = None


class ModelAddConfig(JobConfig):
    """`model-add`: a model folder, a GGUF (dequantized) or a hub model registered as a model artifact."""

    source: str | None = None  # the folder or file (absolute), or the hub id
    source_type: Literal["folder", "gguf", "hub"] | None = None
    name: str | None = None  # the artifact's name
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # a GGUF's dequantized weights
    cached_path: str | None = None  # hub: the snapshot already in the cache (nothing to download)
    sha: str | None = None  # hub: that snapshot's commit
    hub: dict[str, Any] | None = None  # hub: what to download (engine.models.hub.HubModel as a dict)


class ModelAddResult(ResultBase):
    artifact_id: int | None = None
    path: str | None = None
    source_type: str | None = None
    source_sha: str | None = None  # the GGUF's sha256, the hub commit, or None for a folder (its content hash)
    dequantized_from: str | None = None  # a GGUF's quant (Q4_1...)
    note: str | None = None
    dtype: str | None = None


class CompressConfig(JobConfig):
    """`compress`: GPTQ or AWQ of a model artifact into compressed-tensors with llm-compressor."""

    artifact_id: int | None = None
    source_path: str | None = None  # the model folder
    method: str | None = None  # gptq or awq
    scheme: str = "W4A16"
    group_size: int = 128  # weights per scale
    samples: int | None = None  # calibration rows
    max_length: int | None = None  # tokens per calibration row
    dataset_id: int | None = None  # the calibration dataset (its train split; its val split for the check)
    dataset_name: str | None = None
    dataset_path: str | None = None
    name: str | None = None  # the output folder's and artifact's name


class CompressResult(ResultBase):
    artifact_id: int | None = None
    path: str | None = None
    fidelity: str | None = None  # pass, warn or fail: perplexity against the parent
    delta: float | None = None
    limit: float | None = None
    warn_limit: float | None = None
    perplexity: float | None = None
    parent_perplexity: float | None = None
    seconds: float | None = None


PAYLOADS: dict[str, tuple[type[JobConfig], type[ResultBase]]] = {
    "selftest": (SelftestConfig, SelftestResult),
    "dataset-import": (DatasetImportConfig, DatasetImportResult),
    "train": (TrainConfig, TrainResult),
    "merge": (MergeConfig, MergeResult),
    "merge-models": (MergeModelsConfig, MergeResult),
    "convert": (ConvertConfig, GgufResult),
    "quantize": (QuantizeConfig, GgufResult),
    "eval": (EvalConfig, EvalResult),
    "push": (PushConfig, PushResult),
    "model-add": (ModelAddConfig, ModelAddResult),
    "compress": (CompressConfig, CompressResult),
}


class AnyConfig(JobConfig):
    """The config of a kind with no model of its own: stored and read as given."""


class AnyResult(ResultBase):
    """The result of a kind with no model of its own."""


def models_for(kind: str) -> tuple[type[JobConfig], type[ResultBase]]:
    """(config model, result model) of a job kind; free-form ones for a kind with no model."""
    return PAYLOADS.get(kind, (AnyConfig, AnyResult))


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        got = "" if err["type"] in {"value_error", "missing"} else f" (got {err['input']!r})"
        parts.append(f"{field}: {msg}{got}" if field else msg)
    return "; ".join(parts)


def _validate(model: type[P], data: Mapping[str, Any] | None, where: str, *, write: bool) -> P:
    try:
        payload = model.model_validate(dict(data or {}), context=WRITE if write else None)
    except ValidationError as exc:
        raise PayloadError(f"{where}: {_explain(exc)}") from None
    payload._where = where
    return payload


def _free(model: type[Payload]) -> bool:
    return model in (AnyConfig, AnyResult)


def for_write_config(kind: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config checked against `kind`'s model, as the JSON to store (the keys given, types normalized);
    PayloadError names the kind and the field."""
    model = models_for(kind)[0]
    if _free(model):
        return dict(config or {})
    return _validate(model, config, f"{kind} job config", write=True).model_dump(mode="json", exclude_unset=True)


def for_write_result(kind: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """Result fields checked against `kind`'s model, as the JSON to store (set_result adds them to the row's)."""
    model = models_for(kind)[1]
    if _free(model):
        return dict(result)
    return _validate(model, result, f"{kind} job result", write=True).model_dump(mode="json", exclude_unset=True)


def read_payload(model: type[P], data: Mapping[str, Any] | None, where: str = "") -> P:
    """`data` (a row's config or result) read through `model`, leniently (see the module note)."""
    return _validate(model, data, where or model.__name__, write=False)


def job_config(job: Any) -> JobConfig:
    """A job row's config as its kind's model (`job`: anything with kind, id and config)."""
    model = models_for(job.kind)[0]
    return read_payload(model, job.config, f"job {job.id} ({job.kind}) config")


def job_result(job: Any) -> ResultBase:
    """A job row's result as its kind's model."""
    model = models_for(job.kind)[1]
    return read_payload(model, job.result, f"job {job.id} ({job.kind}) result")


def kinds_of(model: type[Payload]) -> list[str]:
    """The job kinds whose config or result `model` is."""
    return [k for k, pair in PAYLOADS.items() if model in pair]


def config_as(model: type[P], job: Any) -> P:
    """A job row's config read as `model`, refused when the job is of another kind (typed access for callers that
    know the kind: `config_as(TrainConfig, job).run`)."""
    expected = kinds_of(model)
    if expected and job.kind not in expected:
        raise PayloadError(f"job {job.id} is a {job.kind} job, not {' or '.join(expected)}")
    return read_payload(model, job.config, f"job {job.id} ({job.kind}) config")
