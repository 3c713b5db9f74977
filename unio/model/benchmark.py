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
  this machine's measured fp32 matmul FLOP/s.

Needs the ``bench`` extra (transformers). Run: ``python scripts/bench_model.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from unio.grammar import grid
from unio.model.compile import compile_model
from unio.model.generate import GenerationConfig, generate
from unio.model.transformer import ModelConfig, UnifiedTransformer
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
    for db, timings in constrained_timings.items():
        log(
            f"constrained ({grammar.name}) batch {db}: best {timings.best('grammar') * 1e3:.0f} ms vs free "
            f"{timings.best('free') * 1e3:.0f} ms, overhead {100 * (timings.ratio('grammar', 'free') - 1):+.1f}% "
            f"(CPU time {100 * (timings.ratio('grammar', 'free', cpu=True) - 1):+.1f}%)"
        )
    return result
