"""Benchmark: evaluation's end-to-end generation throughput vs raw `generate` on the same batches.

    python -m unio.eval.bench <run or checkpoint dir> [max_examples] [batch_size]

For every validation task of the checkpoint's run (unio/eval/evaluate.py): the same examples are
(a) predicted and scored as `unio-eval` does (`predict_examples` end to end: input encoding, sorting
and collation, generate, decoding, `parse`, then the metric) and (b) generated only: the identical
collated batches, grammar and `GenerationConfig` through `generate`, batches prepared beforehand.
Both count the same tokens (up to and including <eos>), so the ratio (a)/(b) of tokens/s is the share
of the time spent in the model: the issue's target is >= 0.8 (everything else costs under 20%).
Prints one JSON object per task and a total.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

from unio.data.collate import collate_inputs
from unio.eval.evaluate import (
    EvalConfig,
    EvalOptions,
    collect_examples,
    read_run_config,
    score_task,
    select_datasets,
    select_tasks,
)
from unio.model.checkpoint import load_model, resolve_checkpoint
from unio.model.generate import GenerationConfig, generate
from unio.pipeline import GenerationOptions, GenerationStats, GrammarCache, predict_examples
from unio.sequence import Annotator
from unio.tasks.base import encode_input


def bench(path: str, max_examples: int = 32, batch_size: int = 16, repeats: int = 2) -> dict[str, Any]:
    checkpoint = resolve_checkpoint(path)
    _, run_config = read_run_config(checkpoint)
    entries = select_datasets(EvalConfig(checkpoint=str(checkpoint)), run_config, str(checkpoint))
    plan = select_tasks(entries, None)
    model, tok = load_model(checkpoint)
    options = EvalOptions(max_examples=max_examples, progress_bar=False)
    options.generation = GenerationOptions(batch_size=batch_size)
    grammars = GrammarCache()
    rows: dict[str, Any] = {}
    total = {"tokens": 0, "eval_seconds": 0.0, "raw_seconds": 0.0}
    for dataset, tasks in plan.items():
        buckets = collect_examples(dataset, entries[dataset], tasks, tok, options)
        for name, bucket in buckets.items():
            if not bucket.examples or name == "text_to_image":
                continue
            task = bucket.task
            predict_examples(
                model, tok, task, bucket.examples[:batch_size], options.generation, grammars
            )  # warm
            eval_seconds, raw_seconds, tokens = [], [], 0
            for _ in range(repeats):
                stats = GenerationStats()
                start = time.perf_counter()
                raw = predict_examples(model, tok, task, bucket.examples, options.generation, grammars, stats)
                score_task(bucket, [r.prediction for r in raw], options)
                eval_seconds.append(time.perf_counter() - start)
                tokens = stats.tokens
                # raw generate: the same batches, prepared outside the timing
                grammar = grammars.get(task, tok)
                config = GenerationConfig(
                    max_new_tokens=max(options.generation.max_new_tokens, grammar.compiled.min_length())
                )
                annotator = (lambda: Annotator(tok.codec)) if task.target_modality != "text" else None
                sequences = [encode_input(e, tok) for e in bucket.examples]
                order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
                batches = [
                    collate_inputs([sequences[i] for i in order[s : s + batch_size]])
                    for s in range(0, len(order), batch_size)
                ]
                start = time.perf_counter()
                raw_tokens = 0
                for batch in batches:
                    out = generate(
                        model, batch, tok.vocab, config, annotator_factory=annotator, grammar=grammar
                    )
                    raw_tokens += int(out.lengths.sum())
                raw_seconds.append(time.perf_counter() - start)
                assert raw_tokens == tokens, (name, raw_tokens, tokens)
            best_eval, best_raw = min(eval_seconds), min(raw_seconds)
            rows[f"{dataset}/{name}"] = {
                "examples": len(bucket.examples),
                "tokens": tokens,
                "eval_tokens_per_second": round(tokens / best_eval, 1),
                "raw_tokens_per_second": round(tokens / best_raw, 1),
                "ratio": round(best_raw / best_eval, 3),
            }
            total["tokens"] += tokens
            total["eval_seconds"] += best_eval
            total["raw_seconds"] += best_raw
    rows["total"] = {
        "tokens": total["tokens"],
        "eval_tokens_per_second": round(total["tokens"] / total["eval_seconds"], 1),
        "raw_tokens_per_second": round(total["tokens"] / total["raw_seconds"], 1),
        "ratio": round(total["raw_seconds"] / total["eval_seconds"], 3),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
    }
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    result = bench(args[0], *(int(a) for a in args[1:3]))
    for key, row in result.items():
        print(json.dumps({"component": key, **row}))
