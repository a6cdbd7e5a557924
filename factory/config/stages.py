"""Typed configuration for every stage: YAML files plus `--set a.b=v` overrides; errors name the field."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .sampling import BudgetConfig, GenerateSampling
from .strict import Strict
from .teacher import MAX_N, SamplingConfig, TeacherConfig


class PromptsConfig(Strict):
    source: str = Field("gym:chain_sum", description="FILE.jsonl|FILE.parquet, gym:TASK, hf:NAME or humaneval")
    limit: int | None = Field(None, ge=1, description="Use at most this many prompts")
    size: int = Field(16, ge=1, description="gym: number of procedurally generated problems")
    seed: int = Field(42, description="gym: dataset seed (use different seeds for training and held-out eval)")
    gym_args: dict[str, Any] = Field(default_factory=dict, description="gym: the task's own settings, e.g. "
                                     "{min_terms: 2, max_terms: 3, max_digits: 2} for chain_sum (difficulty)")
    split: str = Field("train", description="hf: dataset split ('all': every split, concatenated)")
    subset: str | None = Field(None, description="hf: dataset configuration name")
    problem_field: str | None = Field(None, description="hf/file: column holding the problem (auto if unset)")
    answer_field: str | None = Field(None, description="hf/file: column holding the reference answer")
    answer_from_boxed: bool = Field(False, description="hf: take the last \\boxed{} of the answer column")
    tests_field: str | None = Field(None, description="hf/file: column holding code tests (asserts, or JSON "
                                    "{inputs, outputs} as APPS' input_output)")
    task: str | None = Field(None, description="Task for rows that name none: math, code or gym:NAME")


class TemplateConfig(Strict):
    math: str = Field("{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
                      description="User message for math and gym tasks; {problem} is replaced")
    code: str = Field("{problem}\n\nPlease reason step by step, then give your complete solution in a single "
                      "```python code block at the end.", description="User message for code tasks")
    choice: str = Field("Answer the following multiple choice question. The last line of your response should be "
                        "of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. "
                        "Think step by step before answering.\n\n{problem}",
                        description="User message for multiple-choice tasks (GPQA): simple-evals' prompt, which "
                        "R1's GPQA numbers used")
    system: str | None = Field(None, description="System message (R1 recommends none)")


class ReasoningConfig(Strict):
    untagged: Literal["answer", "reasoning", "split_at_final"] = Field(
        "split_at_final", description="Output with no <think> tags and no reasoning_content: all answer, all "
        "reasoning, or reasoning up to the last paragraph (which holds the final answer)")


class ExecutorConfig(Strict):
    """Where a stage's work runs. Not part of any fingerprint: local and Ray runs write the same outputs."""

    kind: Literal["local", "ray"] = Field("local", description="local: this process and its worker processes; "
                                          "ray: Ray Data over a Ray cluster (pip install 'r1-factory[ray]')")
    address: str | None = Field(None, description="ray: the cluster to join ('auto': the one this machine is "
                                "in, or ray://host:10001); unset: start Ray on this machine")
    actors: int = Field(0, ge=0, description="ray: generation actors (an API teacher's concurrency and rate "
                        "limits are split across them) or filter tasks in flight; 0: one per CPU in the cluster")
    shuffle_from: int = Field(2_000_000, ge=0, description="ray filter: rows from which near-dedup's band keys "
                              "are shuffled across the cluster, so the driver holds only shared ones (measured: "
                              "on 20k rows the shuffle cost 5 s, the driver's own pass 0.4 s)")
    batch: int | None = Field(None, ge=1, description="ray: prompts (generate) or row groups (filter) per Ray "
                              "task; unset: 16 rounds of an API actor's concurrency, 4 engine batches, 1 row group")

    @model_validator(mode="before")
    @classmethod
    def _an_address_means_ray(cls, data: Any) -> Any:
        """A cluster's address without a kind (`--ray-address auto`) runs there."""
        if isinstance(data, dict) and data.get("address") and "kind" not in data:
            return {**data, "kind": "ray"}
        return data


_PATH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_path_name(value: str | None) -> str | None:
    """A name that becomes a file or folder name (an eval's label, a stage instance, an RL run): one path
    component, never `..`, so nothing is written outside the output it belongs to."""
    if value is not None and (not _PATH_NAME.fullmatch(value) or ".." in value):
        raise ValueError(f"{value!r}: a name here becomes a file name: letters, digits and . _ + - only, "
                         "starting with a letter or digit, no '..'")
    return value


class ViewConfig(Strict):
    run_dir: str = Field("runs/default", description="Run directory to show (read-only)")
    host: str = Field("127.0.0.1", description="Address to listen on (127.0.0.1: this machine only)")
    port: int = Field(8008, ge=1, le=65535, description="Port to listen on")


class GenerationSettings(Strict):
    """How a model is asked and sampled: the part of the config `factory generate` and `factory eval` share (the
    library in factory/generation/plan.py takes it)."""

    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    progress: bool = Field(True, description="Show progress bars")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where requests are sent from")


class GenerateConfig(GenerationSettings):
    out: str = Field("runs/default", description="Run directory")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    sampling: GenerateSampling = Field(default_factory=GenerateSampling)
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Limits that stop the run (a rerun "
                                 "with a larger one goes on from there)")
    teachers: list[TeacherConfig] = Field(default_factory=list, description="Several teachers: each samples every "
                                          "prompt (n each) into one run, traces carry their teacher; when given, "
                                          "`teacher` is not used")
    cache: str | None = Field(None, description="The sample cache's directory (default: OUT/cache); runs that "
                              "share one never buy a sample twice (`factory ablate` points every variant at one)")
    shard_rows: int = Field(10_000, ge=1, description="Rows per Parquet shard")
    shard: str | None = Field(None, pattern=r"^\d+/\d+$", description="I/N: generate only the prompts whose "
                              "prompt_id hash falls in shard I of N (Slurm job arrays), into OUT/shards/I-of-N; "
                              "`factory merge OUT` joins the shards")

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, v: str | None) -> str | None:
        if v is not None:
            i, n = map(int, v.split("/"))
            if n < 1 or not 0 <= i < n:
                raise ValueError(f"{v}: expected I/N with 0 <= I < N")
        return v

    @field_validator("out")
    @classmethod
    def _out_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a directory")
        return v

    @field_validator("sampling", mode="before")
    @classmethod
    def _plain_sampling(cls, v: Any) -> Any:
        """A plain SamplingConfig (eval's, or a library caller's) is generate's with adaptive sampling off."""
        return v.model_dump() if isinstance(v, SamplingConfig) and not isinstance(v, GenerateSampling) else v

    @model_validator(mode="after")
    def _budget_and_rounds_can_run(self) -> GenerateConfig:
        if len(self.teachers) > 1 and (self.sampling.adaptive.enabled or self.budget.any()):
            raise ValueError("several teachers do not take sampling.adaptive or a budget yet: run one teacher each")
        for t in self.all_teachers():
            self._check_teacher(t)
        return self

    def _check_teacher(self, teacher: TeacherConfig) -> None:
        if self.budget.max_usd is not None and teacher.prices is None:
            raise ValueError("budget.max_usd needs teacher.prices (USD per million input and output tokens)")
        if self.budget.max_usd is not None and not (teacher.prices.input_per_mtok or teacher.prices.output_per_mtok):
            raise ValueError("budget.max_usd with teacher.prices all 0 would never stop the run: set the prices")
        if self.executor.kind == "ray" and (self.sampling.adaptive.enabled or self.budget.any() or teacher.batch):
            raise ValueError("sampling.adaptive, budget and teacher.batch run on the local executor (--executor "
                             "local) for now")
        if teacher.batch:
            if teacher.engine != "openai":
                raise ValueError(f"teacher.batch is for the openai engine (a provider's Batch API), not "
                                 f"{teacher.engine}: set teacher.engine (--teacher openai:MODEL)")
            if self.sampling.adaptive.enabled or self.budget.max_output_tokens or self.budget.max_usd:
                raise ValueError("teacher.batch buys a batch whole: it takes budget.max_samples, not adaptive "
                                 "rounds or a token or dollar budget")

    def all_teachers(self) -> list[TeacherConfig]:
        return self.teachers or [self.teacher]

    def samples_per_prompt(self) -> int:
        """The most samples a prompt may get: n, or adaptive sampling's max_n."""
        return self.sampling.adaptive.max_n if self.sampling.adaptive.enabled else self.sampling.n


class MixSource(Strict):
    source: str = Field(..., description="A run directory (its filtered/kept traces), a .jsonl/.parquet file or "
                        "hf:NAME (rows with `messages`, or a prompt and a response column)")
    count: int | None = Field(None, ge=1, description="Take exactly this many samples (seeded)")
    weight: float | None = Field(None, gt=0, description="Scale the source: 2 = every sample twice, 0.5 = a half")
    reasoning: bool = Field(True, description="false: train the answer alone, without reasoning (R1's 200k "
                            "non-reasoning samples)")
    empty_think: bool = Field(False, description="Non-reasoning samples: an empty <think> block before the answer")
    split: str = Field("train", description="hf: dataset split")
    subset: str | None = Field(None, description="hf: dataset configuration name")


class TrainingSettings(Strict):
    """What every training stage (distill, grpo) is set with, declared once; each stage adds its own."""

    output_dir: str | None = Field(None, description="Where checkpoints go (default: under the run directory)")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps")
    max_position_embeddings: int | None = Field(None, ge=1, description="Extend the model's context to this "
                                                "many positions before training (default: the preset's; qwen-1.5b "
                                                "and qwen-7b: 131072, as the R1-Distill configs)")
    rope_theta: float | None = Field(None, gt=0, description="RoPE base for the extended context (default: the "
                                     "preset's; qwen-1.5b/7b: 300000, as open-r1)")
    lora: bool = Field(False, description="Train LoRA adapters instead of all weights (merged at the end)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 on a GPU that has it; on a CPU that computes bf16 natively (AVX512_BF16, "
        "AMX, Arm BF16) float32 weights with bf16 autocast (bench/results/quickstart_levers.json); float32 "
        "elsewhere. bf16: bf16 (on a CPU, autocast; emulated, so slower, where the CPU lacks it). fp32: float32")
    save_steps: int = Field(50, ge=1, description="Save a checkpoint every this many steps")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk")
    resume: bool = Field(False, description="Continue from the last complete checkpoint")
    seed: int = Field(42, description="Seed for weights init, data order, dropout and sampling")
    progress: bool = Field(True, description="Show the progress bar")
    launch: str | None = Field(None, description="Train in processes of their own under accelerate launch: "
                               "single_gpu, fsdp, deepspeed_zero3, multi_node, cpu_gloo, or a path to an accelerate "
                               "YAML (`factory run` always trains in processes of its own; this says how many)")
    num_processes: int | None = Field(None, ge=1, description="With launch: processes (GPUs) in all (default: "
                                      "the launch config's)")
    trl: dict[str, Any] = Field(default_factory=dict, description="Any other argument of TRL's SFTConfig (distill), "
                                "DPOConfig (prefer) or GRPOConfig (grpo), passed through as given (e.g. {neftune_noise_alpha: 5}); "
                                "checked against TRL's own config when the stage starts. One the factory sets from "
                                "a setting of its own is refused with that setting's name")


class DistillConfig(TrainingSettings):
    run_dir: str = Field("runs/default", description="Run directory holding filtered/kept/")
    student: str = Field("smollm2-135m", description="Preset (qwen-7b, llama-8b, smollm2-135m, tiny...), path or Hub id")
    mix: list[MixSource] = Field(default_factory=list, description="The data mixture (R1: 600k reasoning + 200k "
                                 "non-reasoning samples); empty: the run's own kept traces")
    lr: float | None = Field(None, gt=0, description="Learning rate (default: the preset's)")
    epochs: float | None = Field(None, gt=0, description="Epochs (default: the preset's; R1 used 2)")
    max_length: int | None = Field(None, ge=8, description="Longest sample in tokens; longer ones are dropped")
    batch_size: int | None = Field(None, ge=1, description="Per-device batch size (default: the preset's)")
    grad_accum: int | None = Field(None, ge=1, description="Gradient accumulation steps (default: the preset's)")
    packing: bool | Literal["auto"] = Field(
        "auto", description="true: pack samples best-fit-decreasing into max_length rows with per-sample position ids "
        "(padding-free; samples never attend to each other); false: length-bucketed batches; auto: true with "
        "flash-attention, false elsewhere")
    warmup_ratio: float = Field(0.03, ge=0, le=1, description="Share of steps spent warming up the learning rate")


class EvalSampling(SamplingConfig):
    n: int = Field(8, ge=1, le=MAX_N, description="Samples per problem (pass@1 is averaged over them)")
    max_tokens: int = Field(32768, ge=1, description="Most new tokens per sample (R1 evals used 32768)")


class EvalSettings(GenerationSettings):
    """What an eval is set with but its scorer (the correctness filter's settings, added by factory/stages/eval.py):
    the benchmark sources read it to pick and order the problems."""

    model: str = Field("qwen2.5-coder-0.5b", description="Checkpoint directory, bundled alias, Hub id, or the "
                       "model name an OpenAI-compatible server serves")
    label: str | None = Field(None, description="Name in file names and tables (default: from the model)")
    benchmark: str = Field("math500", description="math500, aime24, aime25, gpqa-diamond, livecodebench, humaneval, "
                           "gym:TASK, or FILE.jsonl/.parquet in the prompt input format (with answers)")
    benchmark_path: str | None = Field(None, description="Hub benchmarks: read this local file (same columns) "
                                       "instead of downloading")
    limit: int | None = Field(None, ge=1, description="Evaluate the first N problems only")
    size: int = Field(50, ge=1, description="gym: number of problems")
    seed: int = Field(1_000_003, description="gym: seed; keep it apart from the training seeds (default 42); "
                      "gpqa-diamond: the order of each question's options")
    date_from: str = Field("2024-08-01", pattern=r"^\d{4}-\d{2}-\d{2}$", description="livecodebench: the "
                           "earliest contest date kept (R1's window: 2024-08-01 to 2025-01-31); problems published "
                           "before a model's training cut-off may be in its training data")
    date_to: str = Field("2025-01-31", pattern=r"^\d{4}-\d{2}-\d{2}$",
                         description="livecodebench: the latest contest date kept")
    gym_args: dict[str, Any] = Field(default_factory=dict, description="gym: the task's own settings (as "
                                     "prompts.gym_args of generate; evaluate on the difficulty you trained on)")
    exclude_runs: list[str] = Field(default_factory=list, description="Run directories whose prompts are dropped "
                                    "from the benchmark (held out means never trained on)")
    ks: list[int] = Field(default_factory=lambda: [1, 4, 8], description="k values for pass@k and maj@k")
    out: str = Field("eval", description="Directory for <label>-<benchmark>.json and the sample cache")
    vs: str | None = Field(None, description="In a pipeline: another of its evals that summary.md also compares "
                           "this one with, paired over the same problems (an RL arm against its control)")
    cache: str | None = Field(None, description="The sample cache's directory (default: OUT/cache); keys hold "
                              "the model's content, so evals that share one sample each model once "
                              "(`factory ablate` points every run's evals at one)")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="Engine settings (model is set "
                                   "from `model`)")
    sampling: EvalSampling = Field(default_factory=EvalSampling)
    workers: int = Field(0, ge=0, description="Scoring processes (0: one per CPU core)")

    @field_validator("label")
    @classmethod
    def _label_is_a_file_name(cls, v: str | None) -> str | None:
        return check_path_name(v)

    @field_validator("date_from", "date_to")
    @classmethod
    def _a_calendar_date(cls, v: str) -> str:
        try:
            date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a date (YYYY-MM-DD)") from None
        return v

    @model_validator(mode="after")
    def _sources_agree(self) -> EvalSettings:
        if self.date_from > self.date_to:
            raise ValueError(f"date_from ({self.date_from}) is after date_to ({self.date_to}): no problem is kept")
        read_as_is = self.benchmark.startswith("gym:") or self.benchmark == "humaneval" or Path(
            self.benchmark).suffix in (".jsonl", ".json", ".parquet")
        if self.benchmark_path and read_as_is:
            raise ValueError(f"benchmark_path is a local copy of a Hub benchmark (math500, aime24, aime25, "
                             f"gpqa-diamond, livecodebench); {self.benchmark} is read as it is: drop benchmark_path")
        return self


class MergeConfig(Strict):
    run_dir: str = Field("runs/default", description="Run directory whose shards/I-of-N generate runs are joined")
    shard_rows: int = Field(10_000, ge=1, description="Rows per Parquet shard of the merged traces")


class CardConfig(Strict):
    run_dir: str = Field("runs/default", description="Run directory with filtered/ output")
    out: str | None = Field(None, description="Where README.md and assets/ go (default RUN_DIR/card)")
    license: str | None = Field(None, description="Licence id for the front matter (default: from the sources)")
    pretty_name: str | None = Field(None, description="Dataset title (default: '<run> reasoning traces')")
    repo_id: str | None = Field(None, description="Hub repo named in the card's loading snippet")
    include_rejected: bool = Field(True, description="Describe the rejected split as a config of its own")
    example_chars: int = Field(800, ge=100, description="Longest reasoning shown in an example")


class PushConfig(CardConfig):
    repo: str = Field("", description="Dataset repo on the Hub: ORG/NAME")
    private: bool = Field(False, description="Create the repo private")
    dry_run: bool = Field(False, description="Lay out the upload in the staging folder and print it; upload nothing")
    include_rejected: bool = Field(False, description="Upload the rejected traces too (config 'rejected')")
    include_pairs: bool = Field(True, description="Upload the preference pairs (config 'pairs') where `factory "
                                "pairs` made them")
    staging: str | None = Field(None, description="Staging folder (default RUN_DIR/push)")
    max_shard_mb: int = Field(500, ge=1, description="Largest Parquet file uploaded; bigger shards are split")
    commit_mb: int = Field(2000, ge=1, description="Bytes per commit: each is a resume point")


