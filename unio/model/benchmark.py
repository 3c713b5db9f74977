"""Speed benchmark: unio's transformer against Hugging Face T5 at matched size, in one process.

Both models get the same width, depth, heads, head size, FFN (gated, 3 matrices: SwiGLU vs T5 v1.1
gated-GELU), tied embeddings, no dropout, the same vocabulary size and the same random inputs.
Measurements alternate unio / HF call by call. Each ratio is the median over rounds of the ratio of
two back-to-back calls (a paired comparison: on a shared VM, load from other processes and
hypervisor steal drift over seconds and would otherwise land on one side only); absolute times and
tokens/s are each side's best call. The same ratios from this process's CPU time are printed too. Reported:

- train step (forward + backward + fused AdamW, the same optimiser on both sides) tokens/s, tokens = batch * (input + target), for unio
  eager and unio compiled (`unio.model.compile.compile_model`, the recommended training path; the
  compile time is reported separately and excluded) against HF eager;
- greedy decoding tokens/s (HF: ``generate`` with its KV cache) at batch 1 and batch 16;
- grammar-constrained decoding time vs unconstrained (same tokens, same annotator);
- peak memory allocated during a train step (torch profiler memory events) plus parameter and
  optimiser state;
- achieved training FLOP/s (analytic matmul FLOPs, `ModelConfig.forward_flops`) as a fraction of
  this machine's measured fp32 matmul FLOP/s;
- patch inputs (unio only: T5 has no patch stem): the same model plus a `PatchStem`, encoder input =
  ``patch_prompt_len`` text tokens + the placeholder span of one ``patch_image_size`` image, against
  the same image as VQ codes of an f``codes_downsample`` tokenizer (``<image>`` + grid + ``</image>``)
  in the same model (the codes row does not run the stem), eager train steps, paired as above.

`input_costs` / `cost_table_lines` compute, without running anything, the encoder tokens and forward
FLOPs per example of each preset at several input resolutions (docs/model.md, `scripts/model_costs.py`).

Needs the ``bench`` extra (transformers). Run: ``python scripts/bench_model.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from unio.grammar import grid
from unio.model.compile import compile_model
from unio.model.generate import GenerationConfig, generate
from unio.model.patches import IMAGE_MODALITY, PatchStemConfig, placeholder_span
from unio.model.presets import load_model_preset
from unio.model.transformer import ModelConfig, UnifiedTransformer, build_model
from unio.sequence import Annotator, SequenceCodec
from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig
from unio.vocab import Vocabulary


@dataclass
class BenchConfig:
    d_model: int = 256
    n_layers: int = 4  # encoder and decoder each
    n_heads: int = 4
    d_ff: int = 1024
    text_size: int = 8860  # with the default other segments: vocabulary size 12288 ("12k")
    batch_size: int = 8
    input_len: int = 320
    target_len: int = 64
    train_repeats: int = 20  # paired ratios of ~1 s steps on a shared VM: 20 rounds steady the median
    decode_tokens: int = 256
    decode_input_len: int = 64
    decode_repeats: int = 6
    constrained_repeats: int = 16  # single ratios scatter by +-15% here; few-percent gaps need many
    constrained_grid: tuple[int, int] = (11, 23)  # 253 codes + <image> </image> <eos> = 256 tokens
    peak_matmul_size: int = 2048  # square fp32 matmul measuring the machine's peak FLOP/s
    threads: int = 0  # 0: torch default
    compile: bool = True  # also time the compiled unio train step; its ratio is train_speedup_vs_hf
    # patch-input row: prompt + one image's placeholder span, against the same image as VQ codes
    patch_image_size: int = 224  # pixels per side (the stem's image_size)
    patch_size: int = 16
    patch_stem_kind: str = "conv"  # PatchStemConfig.kind: conv | linear
    patch_prompt_len: int = 16  # text tokens before the image
    codes_downsample: int = 8  # the codes row: a (patch_image_size / codes_downsample)^2 VQ grid
    patch_repeats: int = 5  # paired rounds (patches, codes); 0 skips the patch-input rows
    seed: int = 0


@dataclass
class Timings:
    """Interleaved wall and CPU times (this process) per callable, one sample per round."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def best(self, name: str) -> float:
        return min(self.wall[name])

    def ratio(self, num: str, den: str, cpu: bool = False) -> float:
        """Median over rounds of ``num_i / den_i``: each pair ran back to back under the same
        background load, so slow drifts and bursts of steal cancel out of the ratio."""
        times = self.cpu if cpu else self.wall
        return statistics.median(a / b for a, b in zip(times[num], times[den]))


def _timed_pairs(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> Timings:
    """Run the callables in interleaved rounds (a, b, a, b, ...) and record every call."""
    timings = Timings({k: [] for k in fns}, {k: [] for k in fns})
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if i >= warmup:
                timings.wall[name].append(time.perf_counter() - start)
                timings.cpu[name].append(time.process_time() - start_cpu)
    return timings


def matmul_peak_flops(
    size: int = 2048,
    repeats: int = 8,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Best observed matmul FLOP/s on `device` in `dtype` (the denominator of MFU on this machine)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    best = 0.0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def peak_step_memory(step: Callable[[], object]) -> int:
    """Peak bytes allocated during one call, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def _state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    )
    return params + state


def build_models(cfg: BenchConfig, vocab_size: int):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(cfg.seed)
    unio_cfg = ModelConfig(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_encoder_layers=cfg.n_layers,
        n_decoder_layers=cfg.n_layers,
        d_ff=cfg.d_ff,
    )
    hf_cfg = T5Config(
        vocab_size=vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_model // cfg.n_heads,
        d_ff=cfg.d_ff,
        num_layers=cfg.n_layers,
        num_decoder_layers=cfg.n_layers,
        num_heads=cfg.n_heads,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return UnifiedTransformer(unio_cfg), T5ForConditionalGeneration(hf_cfg)


def _unio_inputs(ids: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    B, L = ids.shape
    full = lambda v: torch.full((B, L), v, dtype=torch.long)  # noqa: E731
    out = {
        f"{prefix}_ids" if prefix == "input" else "decoder_input_ids": ids,
        f"{prefix}_modality": full(0),
        f"{prefix}_position": torch.arange(L).expand(B, L),
        f"{prefix}_row": full(-1),
        f"{prefix}_col": full(-1),
    }
    if prefix == "input":
        out["input_mask"] = torch.ones(B, L, dtype=torch.bool)
    return out


def patch_stem_flops(stem: PatchStemConfig, d_model: int) -> float:
    """Convolution and projection FLOPs (2 per multiply-add) of a `PatchStem` on one image; like
    `ModelConfig.forward_flops` (which leaves the stem out), norms, GELU and the position add are not
    counted. kind=conv: each 3x3 stride-2 conv (padding 1) halves the side, ``2 * h * w * c_out *
    c_in * 9`` (each residual stride-1 conv of a stage, ``conv_depth - 1`` of them, ``2 * h * w * c**2 * 9``);
    then the projection ``2 * N * features * d_model`` (features = last conv width, or
    ``C * p**2`` for kind=linear). kind=pretrained: the frozen ViT's forward
    (`VisionEncoderConfig.forward_flops`) plus the projection ``2 * N * width * d_model``."""
    if stem.kind == "pretrained":
        return stem.pretrained.forward_flops() + 2.0 * stem.num_patches * stem.pretrained.width * d_model
    h, w = stem.size
    flops, c_in = 0.0, stem.channels
    for width in stem.conv_widths():
        h, w = (h + 1) // 2, (w + 1) // 2
        flops += 2.0 * h * w * width * c_in * 9 + (stem.conv_depth - 1) * 2.0 * h * w * width * width * 9
        c_in = width
    features = c_in if stem.kind == "conv" else stem.channels * stem.patch_size**2
    return flops + 2.0 * stem.num_patches * features * d_model


def codes_input_tokens(image_size: int, downsample: int) -> int:
    """Encoder tokens of one image as VQ codes: ``<image>`` + (size / downsample)^2 codes + ``</image>``."""
    return (image_size // downsample) ** 2 + 2


def _patch_rows(cfg: BenchConfig, vocab: Vocabulary, stem: PatchStemConfig, gen: torch.Generator):
    """Encoder inputs [B, L] of the patch-input row (prompt + placeholder span, and the images) and
    of the codes row (prompt + ``<image>`` + random VQ codes on the grid + ``</image>``)."""
    B, P = cfg.batch_size, cfg.patch_prompt_len
    text_lo = vocab.offset("text")
    prompt = torch.randint(text_lo, text_lo + cfg.text_size, (B, P), generator=gen)
    text_meta = {"modality": torch.zeros(P, dtype=torch.long), "row": torch.full((P,), -1)}
    text_meta["col"] = text_meta["row"]

    def assemble(ids: torch.Tensor, image: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        L = ids.shape[1]
        out = {"input_ids": ids, "input_position": torch.arange(L).expand(B, L)}
        for key in ("modality", "row", "col"):
            out[f"input_{key}"] = torch.cat([text_meta[key], image[key]]).expand(B, L)
        out["input_mask"] = torch.ones(B, L, dtype=torch.bool)
        return out

    span = placeholder_span(stem, start_position=P)
    patches = assemble(torch.cat([prompt, span["ids"].expand(B, -1)], dim=1), span)
    patches["input_images"] = torch.randint(
        0, 256, (B, stem.channels, *stem.size), dtype=torch.uint8, generator=gen
    )

    side = cfg.patch_image_size // cfg.codes_downsample
    n = side * side
    image_lo = vocab.offset("image")
    codes_ids = torch.randint(image_lo, image_lo + vocab.segment_size("image"), (B, n), generator=gen)
    brackets = [torch.full((B, 1), vocab.token_id(t)) for t in ("<image>", "</image>")]
    grid_pos = torch.arange(n)
    none = torch.tensor([-1])
    codes_meta = {
        "modality": torch.full((n + 2,), IMAGE_MODALITY),
        "row": torch.cat([none, grid_pos // side, none]),
        "col": torch.cat([none, grid_pos % side, none]),
    }
    codes = assemble(torch.cat([prompt, brackets[0], codes_ids, brackets[1]], dim=1), codes_meta)
    return patches, codes


def _patch_input_rows(
    cfg: BenchConfig,
    vocab: Vocabulary,
    model_cfg: ModelConfig,
    decoder_in: torch.Tensor,
    targets: torch.Tensor,
    peak: float,
    gen: torch.Generator,
) -> tuple[dict[str, float], list[str]]:
    """Eager train steps of the benchmark model plus a patch stem: the patch-input row against the
    same image as VQ codes (same model, same prompt and targets), paired rounds. Returns the result
    keys (``patch_*``) and the lines of its table."""
    stem = PatchStemConfig(
        kind=cfg.patch_stem_kind, patch_size=cfg.patch_size, image_size=cfg.patch_image_size
    )
    torch.manual_seed(cfg.seed)
    model = build_model(replace(model_cfg, patch_stem=stem), vocab).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    patches, codes = _patch_rows(cfg, vocab, stem, gen)
    B, T, V = cfg.batch_size, cfg.target_len, vocab.size
    decoder = _unio_inputs(decoder_in, "decoder")

    def step(inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            logits = model(**inputs, **decoder)
            F.cross_entropy(logits.view(-1, V), targets.view(-1)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    timings = _timed_pairs({"patches": step(patches), "codes": step(codes)}, cfg.patch_repeats)
    lengths = {"patches": patches["input_ids"].shape[1], "codes": codes["input_ids"].shape[1]}
    stem_flops = patch_stem_flops(stem, model_cfg.d_model)
    flops = {
        "patches": 3 * (model_cfg.forward_flops(lengths["patches"], T) + stem_flops) * B,
        "codes": 3 * model_cfg.forward_flops(lengths["codes"], T) * B,
    }
    best = {k: timings.best(k) for k in lengths}
    tokens_per_s = {k: B * (lengths[k] + T) / best[k] for k in lengths}
    result = {
        "patch_train_tokens_per_s": tokens_per_s["patches"],
        "patch_codes_train_tokens_per_s": tokens_per_s["codes"],
        "patch_train_examples_per_s": B / best["patches"],
        "patch_codes_train_examples_per_s": B / best["codes"],
        "patch_vs_codes_speedup": timings.ratio("codes", "patches"),
        "patch_vs_codes_speedup_cpu": timings.ratio("codes", "patches", cpu=True),
        "patch_train_flops_fraction_of_matmul_peak": flops["patches"] / best["patches"] / peak,
        "patch_codes_train_flops_fraction_of_matmul_peak": flops["codes"] / best["codes"] / peak,
        "patch_stem_flops_fraction": stem_flops
        / (model_cfg.forward_flops(lengths["patches"], T) + stem_flops),
    }
    speedup = result["patch_vs_codes_speedup"]
    n, n_codes = stem.num_patches, codes_input_tokens(cfg.patch_image_size, cfg.codes_downsample) - 2
    lines = [
        "",
        f"patch inputs, unio eager, batch {B}, target {T}: a {cfg.patch_image_size} px image as {n} "
        f"patches ({cfg.patch_stem_kind} stem, {cfg.patch_size} px) vs as {n_codes} f{cfg.codes_downsample} "
        f"VQ codes + 2 brackets, after {cfg.patch_prompt_len} prompt tokens",
        f"{'measurement (wall clock)':<36}{'patches':>12}{'codes':>12}{'codes time/patches time':>26}",
        f"{'encoder tokens':<36}{lengths['patches']:>12}{lengths['codes']:>12}",
        f"{'train step examples/s':<36}{B / best['patches']:>12.2f}{B / best['codes']:>12.2f}{speedup:>26.2f}",
        f"{'train step tokens/s':<36}{tokens_per_s['patches']:>12.2f}{tokens_per_s['codes']:>12.2f}",
        f"{'  fraction of matmul peak':<36}{result['patch_train_flops_fraction_of_matmul_peak']:>12.2f}"
        f"{result['patch_codes_train_flops_fraction_of_matmul_peak']:>12.2f}",
        f"stem: {100 * result['patch_stem_flops_fraction']:.1f}% of the patch row's forward FLOPs "
        f"(best of {cfg.patch_repeats}; ratio = median of paired rounds)",
    ]
    return result, lines


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, float]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    vocab = Vocabulary.default(text_size=cfg.text_size)
    unio_model, hf_model = build_models(cfg, vocab.size)
    V, B, L, T = vocab.size, cfg.batch_size, cfg.input_len, cfg.target_len
    gen = torch.Generator().manual_seed(cfg.seed)
    text_lo = vocab.offset("text")
    x = torch.randint(text_lo, text_lo + cfg.text_size, (B, L), generator=gen)
    y = torch.randint(text_lo, text_lo + cfg.text_size, (B, T), generator=gen)
    decoder_in = torch.cat([torch.full((B, 1), vocab.bos_id), y[:, :-1]], dim=1)
    batch = {**_unio_inputs(x, "input"), **_unio_inputs(decoder_in, "decoder")}
    hf_mask = torch.ones(B, L, dtype=torch.long)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, vocabulary {V}")
    log(
        f"parameters: unio {unio_model.num_parameters() / 1e6:.2f}M "
        f"(analytic {unio_model.config.num_parameters() / 1e6:.2f}M), "
        f"HF T5 {sum(p.numel() for p in hf_model.parameters()) / 1e6:.2f}M"
    )

    # ------------------------------------------------------------------ training step
    # Both sides use torch's fused AdamW (one kernel over all parameters; on CPU the default is a
    # per-tensor loop about 5x slower): the optimiser is the same code for both models.
    unio_opt = torch.optim.AdamW(unio_model.parameters(), lr=1e-4, fused=True)
    hf_opt = torch.optim.AdamW(hf_model.parameters(), lr=1e-4, fused=True)
    unio_model.train()
    hf_model.train()

    def unio_step() -> None:
        logits = unio_model(**batch)
        F.cross_entropy(logits.view(-1, V), y.view(-1)).backward()
        unio_opt.step()
        unio_opt.zero_grad(set_to_none=True)

    compiled_model = compile_model(unio_model) if cfg.compile else None

    def unio_compiled_step() -> None:
        logits = compiled_model(**batch)
        F.cross_entropy(logits.view(-1, V), y.view(-1)).backward()
        unio_opt.step()
        unio_opt.zero_grad(set_to_none=True)

    def hf_step() -> None:
        # decoder_input_ids given explicitly: both models see the same shifted targets.
        out = hf_model(input_ids=x, attention_mask=hf_mask, decoder_input_ids=decoder_in, labels=y)
        out.loss.backward()
        hf_opt.step()
        hf_opt.zero_grad(set_to_none=True)

    steps = {"unio": unio_step, "hf": hf_step}
    compile_seconds = 0.0
    if compiled_model is not None:
        start = time.perf_counter()
        unio_compiled_step()  # compiles forward and backward for this shape
        compile_seconds = time.perf_counter() - start
        log(f"unio compile (first compiled train step): {compile_seconds:.1f} s")
        steps = {"unio": unio_step, "unio_compiled": unio_compiled_step, "hf": hf_step}
    peak_before = matmul_peak_flops(cfg.peak_matmul_size)
    train_timings = _timed_pairs(steps, cfg.train_repeats, warmup=2)
    train = {k: train_timings.best(k) for k in steps}
    log(
        "train step: "
        + ", ".join(f"{k} {v:.3f} s" for k, v in train.items())
        + f" (best of {cfg.train_repeats})"
    )
    peak = max(peak_before, matmul_peak_flops(cfg.peak_matmul_size))
    # The headline ratio uses the variant unio's training would run: compiled when enabled.
    main = "unio_compiled" if compiled_model is not None else "unio"
    tokens = B * (L + T)
    flops = 3 * unio_model.config.forward_flops(L, T) * B
    memory = {"unio": peak_step_memory(unio_step), "hf": peak_step_memory(hf_step)}
    state = {"unio": _state_bytes(unio_model, unio_opt), "hf": _state_bytes(hf_model, hf_opt)}

    # ------------------------------------------------------------------ patch inputs (unio only)
    patch: dict[str, float] = {}
    if cfg.patch_repeats > 0:
        patch, patch_lines = _patch_input_rows(cfg, vocab, unio_model.config, decoder_in, y, peak, gen)

    # ------------------------------------------------------------------ greedy decoding
    unio_model.eval()
    hf_model.eval()
    hf_model.generation_config.eos_token_id = None  # always decode the full length, like unio below
    hf_model.generation_config.pad_token_id = 0
    decode: dict[int, dict[str, float]] = {}
    decode_timings: dict[int, Timings] = {}
    for db in (1, 16):
        ids = torch.randint(text_lo, text_lo + cfg.text_size, (db, cfg.decode_input_len), generator=gen)
        enc = _unio_inputs(ids, "input")
        gcfg = GenerationConfig(max_new_tokens=cfg.decode_tokens, stop_at_eos=False)

        def unio_decode(enc=enc, gcfg=gcfg) -> None:
            out = generate(unio_model, enc, vocab, gcfg)
            assert out.tokens.shape[1] == cfg.decode_tokens

        def hf_decode(ids=ids) -> None:
            with torch.inference_mode():
                out = hf_model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=cfg.decode_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                )
            assert out.shape[1] == cfg.decode_tokens + 1  # + decoder start token

        decode_timings[db] = _timed_pairs({"unio": unio_decode, "hf": hf_decode}, cfg.decode_repeats)
        decode[db] = {k: decode_timings[db].best(k) for k in ("unio", "hf")}
        log(f"greedy decode batch {db}: unio {decode[db]['unio']:.2f} s, HF {decode[db]['hf']:.2f} s")

    # ------------------------------------------------------------------ constrained decoding
    text_tok = TextTokenizer.train(builtin_corpus(), TextTokenizerConfig(vocab_size=1000))
    codec = SequenceCodec(vocab, text_tok, {"image": tuple(cfg.constrained_grid)})
    grammar = grid(codec, "image")
    steps = grammar.compiled.min_length()
    constrained_timings: dict[int, Timings] = {}
    outputs: list[torch.Tensor] = []
    for db in (1, 16):
        ids = torch.randint(text_lo, text_lo + cfg.text_size, (db, cfg.decode_input_len), generator=gen)
        enc = _unio_inputs(ids, "input")

        def free(enc=enc) -> None:
            g = GenerationConfig(max_new_tokens=steps, stop_at_eos=False)
            generate(unio_model, enc, vocab, g, annotator_factory=lambda: Annotator(codec))

        def constrained_run(enc=enc) -> None:
            g = GenerationConfig(max_new_tokens=steps)
            out = generate(
                unio_model, enc, vocab, g, annotator_factory=lambda: Annotator(codec), grammar=grammar
            )
            outputs.append(out.tokens)

        constrained_timings[db] = _timed_pairs(
            {"free": free, "grammar": constrained_run}, cfg.constrained_repeats
        )

    assert all(codec.decode(row).ok for tokens in outputs for row in tokens), "unparseable output"

    # ------------------------------------------------------------------ report
    result = {
        "train_speedup_vs_hf": train_timings.ratio("hf", main),
        "decode_speedup_vs_hf": decode_timings[1].ratio("hf", "unio"),
        "decode_batch16_speedup_vs_hf": decode_timings[16].ratio("hf", "unio"),
        "constrained_overhead": max(c.ratio("grammar", "free") - 1 for c in constrained_timings.values()),
        "train_flops_fraction_of_matmul_peak": flops / train[main] / peak,
        "train_speedup_vs_hf_cpu": train_timings.ratio("hf", main, cpu=True),
        "train_speedup_vs_hf_eager": train_timings.ratio("hf", "unio"),
        "train_speedup_vs_hf_eager_cpu": train_timings.ratio("hf", "unio", cpu=True),
        "compile_seconds": compile_seconds,
        "decode_speedup_vs_hf_cpu": decode_timings[1].ratio("hf", "unio", cpu=True),
        "decode_batch16_speedup_vs_hf_cpu": decode_timings[16].ratio("hf", "unio", cpu=True),
        "constrained_overhead_cpu": max(
            c.ratio("grammar", "free", cpu=True) - 1 for c in constrained_timings.values()
        ),
        "hf_train_flops_fraction_of_matmul_peak": flops / train["hf"] / peak,
        "matmul_peak_gflops": peak / 1e9,
        "train_tokens_per_s_unio": tokens / train[main],
        "train_tokens_per_s_unio_eager": tokens / train["unio"],
        "train_tokens_per_s_hf": tokens / train["hf"],
        "decode_tokens_per_s_unio_b1": cfg.decode_tokens / decode[1]["unio"],
        "decode_tokens_per_s_hf_b1": cfg.decode_tokens / decode[1]["hf"],
        "decode_tokens_per_s_unio_b16": 16 * cfg.decode_tokens / decode[16]["unio"],
        "decode_tokens_per_s_hf_b16": 16 * cfg.decode_tokens / decode[16]["hf"],
        "train_peak_mib_unio": memory["unio"] / 2**20,
        "train_peak_mib_hf": memory["hf"] / 2**20,
        "state_mib_unio": state["unio"] / 2**20,
        "state_mib_hf": state["hf"] / 2**20,
        **patch,
    }
    # (name, unio, HF, unio/HF): speed rows show each side's best call and the paired-median ratio.
    speedup = result["train_speedup_vs_hf_eager"]
    rows = [
        ("train step tokens/s, unio eager", tokens / train["unio"], tokens / train["hf"], speedup),
        ("  fraction of matmul peak", flops / train["unio"] / peak, flops / train["hf"] / peak, speedup),
    ]
    if compiled_model is not None:
        speedup = result["train_speedup_vs_hf"]
        rows += [
            ("train step tokens/s, unio compiled", tokens / train[main], tokens / train["hf"], speedup),
            ("  fraction of matmul peak", flops / train[main] / peak, flops / train["hf"] / peak, speedup),
        ]
    for db, key in ((1, "decode_speedup_vs_hf"), (16, "decode_batch16_speedup_vs_hf")):
        per_s = db * cfg.decode_tokens
        rows.append(
            (
                f"greedy decode tokens/s, batch {db}",
                per_s / decode[db]["unio"],
                per_s / decode[db]["hf"],
                result[key],
            )
        )
    for name, key in (
        ("train step peak activations MiB", "train_peak_mib"),
        ("params + AdamW state MiB", "state_mib"),
    ):
        unio_value, hf_value = result[f"{key}_unio"], result[f"{key}_hf"]
        rows.append((name, unio_value, hf_value, unio_value / hf_value))
    log("")
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"matmul peak (fp32, best {cfg.peak_matmul_size}^3 matmul): {peak / 1e9:.1f} GFLOP/s")
    log("speed: each side's best call; unio/HF: median over rounds of back-to-back paired ratios")
    log(f"{'measurement (wall clock)':<36}{'unio':>12}{'HF T5':>12}{'unio/HF':>10}")
    for name, u, h, ratio in rows:
        log(f"{name:<36}{u:>12.2f}{h:>12.2f}{ratio:>10.2f}")
    log(
        "unio/HF by CPU time: train {:.2f} (eager {:.2f}), decode batch 1 {:.2f}, "
        "decode batch 16 {:.2f}".format(
            result["train_speedup_vs_hf_cpu"],
            result["train_speedup_vs_hf_eager_cpu"],
            result["decode_speedup_vs_hf_cpu"],
            result["decode_batch16_speedup_vs_hf_cpu"],
        )
    )
    if patch:
        for line in patch_lines:
            log(line)
    for db, timings in constrained_timings.items():
        log(
            f"constrained ({grammar.name}) batch {db}: best {timings.best('grammar') * 1e3:.0f} ms vs free "
            f"{timings.best('free') * 1e3:.0f} ms, overhead {100 * (timings.ratio('grammar', 'free') - 1):+.1f}% "
            f"(CPU time {100 * (timings.ratio('grammar', 'free', cpu=True) - 1):+.1f}%)"
        )
    return result


# ---------------------------------------------------------------------- analytic cost per preset
COST_PRESETS = ("tiny", "small", "base", "large", "xl")
COST_RESOLUTIONS = ((64, 8), (224, 16), (256, 16), (384, 16))  # (image side px, patch side px)


@dataclass(frozen=True)
class InputCost:
    """Forward cost of one example with one image input of one preset at one resolution.

    ``forward_flops`` = `ModelConfig.forward_flops(encoder_tokens, target_tokens)` + ``stem_flops``
    (`patch_stem_flops`); training costs about 3x. The codes columns are the same example with the
    image as f``codes_downsample`` VQ codes instead (`codes_input_tokens`; no stem, and the VQ encoder,
    run once at pretokenization, is not counted)."""

    preset: str
    image_size: int
    patch_size: int
    image_tokens: int  # (image_size / patch_size)^2 placeholder tokens
    encoder_tokens: int  # prompt + image_tokens
    target_tokens: int
    stem_flops: float
    forward_flops: float
    codes_downsample: int
    codes_encoder_tokens: int  # prompt + <image> + codes + </image>
    codes_forward_flops: float


def input_costs(
    presets: Sequence[str] = COST_PRESETS,
    resolutions: Sequence[tuple[int, int]] = COST_RESOLUTIONS,
    prompt_tokens: int = 16,
    target_tokens: int = 32,
    stem_kind: str = "conv",
    codes_downsample: int = 8,
    vocab_size: int | None = None,
) -> list[InputCost]:
    """`InputCost` for every preset (conf/model/ name or .yaml path) x (image size, patch size), with
    the default stem options of ``stem_kind``; ``vocab_size`` None = the default vocabulary's size."""
    vocab_size = vocab_size or Vocabulary.default().size
    costs = []
    for name in presets:
        model = replace(load_model_preset(name), vocab_size=vocab_size)
        for image_size, patch_size in resolutions:
            stem = PatchStemConfig(kind=stem_kind, patch_size=patch_size, image_size=image_size)
            stem_flops = patch_stem_flops(stem, model.d_model)
            encoder = prompt_tokens + stem.num_patches
            codes = prompt_tokens + codes_input_tokens(image_size, codes_downsample)
            costs.append(
                InputCost(
                    preset=str(name),
                    image_size=image_size,
                    patch_size=patch_size,
                    image_tokens=stem.num_patches,
                    encoder_tokens=encoder,
                    target_tokens=target_tokens,
                    stem_flops=stem_flops,
                    forward_flops=model.forward_flops(encoder, target_tokens) + stem_flops,
                    codes_downsample=codes_downsample,
                    codes_encoder_tokens=codes,
                    codes_forward_flops=model.forward_flops(codes, target_tokens),
                )
            )
    return costs


def cost_table_lines(costs: Sequence[InputCost]) -> list[str]:
    """`input_costs` as a Markdown table (GFLOPs per example, forward only)."""
    if not costs:
        return []
    f = costs[0].codes_downsample
    lines = [
        f"| preset | image px / patch px | image tokens | encoder tokens | stem GFLOPs | forward GFLOPs "
        f"| stem share | f{f} codes encoder tokens | f{f} codes forward GFLOPs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        lines.append(
            f"| {c.preset} | {c.image_size} / {c.patch_size} | {c.image_tokens} | {c.encoder_tokens} | "
            f"{c.stem_flops / 1e9:,.3f} | {c.forward_flops / 1e9:,.2f} | "
            f"{100 * c.stem_flops / c.forward_flops:.1f}% | {c.codes_encoder_tokens} | "
            f"{c.codes_forward_flops / 1e9:,.2f} |"
        )
    return lines
