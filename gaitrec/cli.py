"""``gaitrec`` command line. Thin: parse arguments, call the library, turn user errors into one line."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import threading
import warnings
from pathlib import Path

from .benchmarks import benchmarks_with, protocol_rules
from .errors import ConfigError, UserError

# Commands that never run torch: they skip setting its thread count (importing torch takes seconds).
NO_TORCH_COMMANDS = ("synth", "pretreat", "pack", "unpack", "data", "bench")

# Errors that mean "the input is wrong", printed as one line; anything else is a bug and keeps its traceback.
# gaitrec raises UserError subclasses for bad input; OSError covers files the user named (missing, unwritable,
# disk full). A plain ValueError is still printed as one line, with a hint, for commands not yet converted to
# UserError; remove it from this tuple once every command raises UserError.
USER_ERRORS = (UserError, OSError, ValueError)


def main_process() -> bool:
    """False in the processes torchrun starts besides rank 0: they work but do not talk."""
    return os.environ.get("RANK", "0") == "0"


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    if main_process():
        print(f"warning: {message}", file=sys.stderr)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; every option with a default says it, unless its help already does."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = any(action.default is x for x in (None, False, argparse.SUPPRESS)) or action.default == []
        if "default" in text or not action.option_strings or unset:
            return text
        return f"{text} (default: %(default)s)"


# Shown under each command's --help.
EXAMPLES = {
    "watch": """\
examples:
  gaitrec watch street.mp4 --gallery people.db --annotate street-named.mp4
  gaitrec watch 0 --gallery people.db --window 20 --step 5     # the first camera, live""",
    "extract": """\
examples:
  gaitrec extract street.mp4 tracks/ --preview tracks.png --annotate street-tracks.mp4
  gaitrec extract frames/ tracks/ --min-height 60     # a folder of frame images; ignore people under 60 px""",
    "train": """\
Writes checkpoints, train.log, metrics.jsonl, config.yaml and TensorBoard events into
<output_root>/<dataset_name>/<model>/<save_name>/ (output_root defaults to ./output).
CONFIG is a file, or a shipped config by name (gaitset/gaitset.yaml, or gaitset when unique).
A --set value is YAML: numbers, true/false, lists in brackets (quote them for the shell).

examples:
  gaitrec train configs/gaitset/gaitset.yaml --set data_cfg.dataset_root=/data/CASIA-B-pkl
  gaitrec train gaitset --set data_cfg.dataset_root=synthgait \\
      --set data_cfg.dataset_partition=synthgait/partition.json \\
      --set trainer_cfg.total_iter=1000 --set 'trainer_cfg.sampler.batch_size=[4,4]'
  gaitrec train configs/gaitgl/gaitgl.yaml --resume
  torchrun --nproc_per_node 8 -m gaitrec train configs/gaitgl/gaitgl.yaml""",
    "test": """\
examples:
  gaitrec test output/SynthGait/Baseline/Baseline_SynthGait          # a run directory: its config, newest checkpoint
  gaitrec test --checkpoint output/.../checkpoints/GaitSet-40000.pt  # a gaitrec checkpoint carries its config
  gaitrec test configs/gaitgl/gaitgl.yaml --checkpoint GaitGL-80000.pt --set data_cfg.dataset_root=/data/CASIA-B-pkl""",
    "evaluate": """\
examples:
  gaitrec evaluate run/test/features.npz --protocol casia-b
  gaitrec evaluate features.npz --protocol gait3d --metric cos --rerank --json
  gaitrec evaluate features.npz --protocol oumvlp --output report/""",
    "bench": """\
examples:
  gaitrec bench --quick
  gaitrec bench --smoke
  gaitrec bench""",
    "params": """\
examples:
  gaitrec params configs/gaitgl/gaitgl_OUMVLP.yaml
  gaitrec params gaitset --json""",
    "demo": """\
Takes a few minutes on a laptop CPU (see README, "Measured figures"); --iterations shortens it.

examples:
  gaitrec demo
  gaitrec demo --iterations 100 --output demo-quick""",
    "synth": """\
examples:
  gaitrec synth --output synthgait
  gaitrec synth --output small --subjects 8 --frames 20 --views 000,090 --types nm-01,nm-05,bg-01,cl-01
  gaitrec synth --preview sheet.png --views 000,090
  gaitrec synth --output street --domain street --subjects 400 --walks 4   # street-camera tracks""",
    "pretreat": """\
examples:
  gaitrec pretreat /data/CASIA-B-raw /data/CASIA-B-pkl --dataset casia-b
  gaitrec pretreat /data/GREW-raw /data/GREW-store --dataset grew --format store""",
    "pack": """\
example:
  gaitrec pack /data/CASIA-B-pkl /data/CASIA-B-store""",
    "unpack": """\
example:
  gaitrec unpack /data/CASIA-B-store /data/CASIA-B-pkl""",
    "adapt": """\
The adapted model embeds differently from its base: it has a new model identity, so a gallery enrolled with
the base model refuses it. Enrol your people again with the adapted checkpoint, in a new gallery.
Measured on real footage (vtest.avi) and held-out SynthGait, it has not yet improved identification over the
shipped model (benchmarks/RESULTS.md, "Unlabelled adaptation"): check it on your own people before relying on it.

examples:
  gaitrec extract street.mp4 tracks/
  gaitrec adapt tracks/ --output adapted.pt
  gaitrec enroll people.db alice alice.mp4 --config default_model --checkpoint adapted.pt
  gaitrec identify people.db clip.mp4 --config default_model --checkpoint adapted.pt
  gaitrec adapt day1.mp4 day2/ --config cfg.yaml --checkpoint model.pt --output model-adapted.pt --iterations 500""",
    "data": """\
example:
  gaitrec data info /data/CASIA-B-pkl --partition datasets/CASIA-B/CASIA-B.json --sheet sheet.png""",
}


def add_config_args(p: argparse.ArgumentParser, run_dir: bool = False) -> None:
    if run_dir:
        p.add_argument("config", nargs="?", metavar="CONFIG_OR_RUN_DIR",
                       help="run config (a YAML file in OpenGait's schema, or a shipped config by name), or a "
                       "run directory written by gaitrec train "
                       "(its config.yaml and newest checkpoint); may be left out with --checkpoint")
    else:
        p.add_argument("config", help="run config: a YAML file in OpenGait's schema, or a shipped config by name "
                       "(gaitset/gaitset.yaml, or gaitset when unique)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set trainer_cfg.total_iter=100 or "
                   "--set 'trainer_cfg.sampler.batch_size=[4,4]' (repeatable)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available, else cpu)")


def load(args):
    from .config import load_config

    return load_config(args.config, args.overrides)


def cmd_train(args) -> int:
    from .engine.trainer import train

    cfg = load(args)
    result = train(cfg, device=args.device, resume=args.resume, progress=not args.quiet,
                   test_at_end=not args.no_test)
    if result["test"] is not None:
        from .evaluation.report import print_table

        print(print_table(result["test"]))
    if main_process():
        print(f"run directory: {result['run_dir']}")
    return 0


def cmd_test(args) -> int:
    from .engine import distributed
    from .engine.inference import load_trained_model, resolve_test_target, run_test
    from .evaluation.report import print_table

    cfg, path, run_dir = resolve_test_target(args.config, args.checkpoint, args.overrides)
    ctx = distributed.init(args.device)
    model = load_trained_model(cfg, path, ctx.device, strict=cfg["evaluator_cfg"]["restore_ckpt_strict"])
    output = Path(args.output) if args.output else run_dir / "test" / path.stem
    result = run_test(cfg, model, ctx, output, overwrite=args.overwrite, progress=not args.quiet, checkpoint=path)
    if result is not None:
        print(print_table(result))
        print(f"features and report: {output}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.features import load_features
    from .evaluation.protocols import evaluate
    from .evaluation.report import print_table, rounded, write_report

    if args.probe_set and args.protocol != "gait3d":
        raise ConfigError(f"--probe-set applies to the gait3d protocol only, not {args.protocol}")
    features = load_features(args.features)
    result = evaluate(features, args.protocol, metric=args.metric, rerank=args.rerank, probe_set=args.probe_set)
    if args.output:
        write_report(result, args.output, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(rounded(result.to_json()), indent=2))
    else:
        print(print_table(result))
    return 0


def cmd_params(args) -> int:
    import torch

    from .models import count_parameters, create_model

    cfg = load(args)
    with torch.device("meta"):  # count without allocating: some OU-MVLP/GREW models hold 300M parameters
        model = create_model(cfg["model_cfg"])
    count = count_parameters(model)
    if args.json:
        print(json.dumps({"model": cfg["model_cfg"]["model"], "params": count}))
    else:
        print(f"{cfg['model_cfg']['model']}: {count:,} parameters")
    return 0


def cmd_export(args) -> int:
    """Export a checkpoint's model to TorchScript or ONNX; exit 1 when the export differs from PyTorch."""
    from .export import (DEFAULT_TOLERANCE, INPUT_NAME, OUTPUT_NAME, ExportMismatchError, export_checkpoint,
                         format_differences, parse_frame_size)

    frame_size = parse_frame_size(args.frame_size) if args.frame_size else None
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance > 0:
        raise ConfigError(f"--tolerance must be positive, got {tolerance}")
    cfg = load(args)
    try:
        summary = export_checkpoint(cfg, args.checkpoint, args.out, args.format, frame_size=frame_size,
                                    overwrite=args.overwrite, tolerance=tolerance, progress=not args.quiet)
    except ExportMismatchError as err:
        print(f"gaitrec export: error: {err}", file=sys.stderr)
        return 1
    h, w = summary["frame_size"]
    c, p = summary["embedding_shape"]
    print(f"{summary['model']} -> {summary['out']} ({summary['format']}, {summary['bytes'] / 1e6:.1f} MB, "
          f"{summary['seconds']:.1f} s)")
    print(f"input '{INPUT_NAME}' [N, T, {h}, {w}] float in [0, 1], output '{OUTPUT_NAME}' [N, {c}, {p}]; "
          f"frame size {h}x{w} from {summary['frame_size_from']}")
    print(f"max relative difference to PyTorch ({summary['checked_with']}): "
          f"{format_differences(summary['max_relative_difference'])}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(output=args.output, data=args.data, iterations=args.iterations, progress=not args.quiet)
    return 0


def cmd_synth(args) -> int:
    from .synth import generate_dataset, write_preview

    if args.domain:
        return synth_domain(args)
    if args.walks is not None:
        raise ConfigError("--walks applies to --domain street or heldout")
    if args.preview:
        shown = {k: v for k, v in (("subjects", args.subjects), ("frames", args.frames), ("views", args.views),
                                   ("types", args.types)) if v is not None}
        write_preview(args.preview, seed=args.seed, size=args.size, **shown)
        print(f"preview: {args.preview}")
    if args.output:
        options = {k: v for k, v in (("subjects", args.subjects), ("frames", args.frames), ("views", args.views),
                                     ("types", args.types)) if v is not None}
        summary = generate_dataset(args.output, size=args.size, seed=args.seed, raw=args.raw,
                                   progress=not args.quiet, **options)
        print(json.dumps(summary, default=str))
    if not args.output and not args.preview:
        raise ConfigError("nothing to do: give --output DIR and/or --preview PNG")
    return 0


def synth_domain(args) -> int:
    """``gaitrec synth --domain``: tracks rendered as a street camera (or the held-out camera) sees them."""
    from .synth.domain import generate_domain_dataset

    other = [flag for flag, value in (("--frames", args.frames), ("--views", args.views), ("--types", args.types),
                                      ("--raw", args.raw), ("--preview", args.preview)) if value]
    if other:
        raise ConfigError(f"{', '.join(other)} do not apply to --domain {args.domain} (its tracks draw their own "
                          "camera, length and direction)")
    if not args.output:
        raise ConfigError(f"--domain {args.domain} needs --output DIR")
    summary = generate_domain_dataset(args.output, args.domain, subjects=args.subjects or 1000,
                                      walks=args.walks or 4, seed=args.seed, size=args.size, progress=not args.quiet)
    print(json.dumps(summary, default=str))
    return 0


def cmd_pretreat(args) -> int:
    from .data.pretreat import pretreat

    summary = pretreat(args.input, args.output, dataset=args.dataset, img_size=args.img_size, workers=args.workers,
                       output_format=args.format, progress=not args.quiet)
    print(json.dumps(summary, default=str))
    return 0


def cmd_pack(args) -> int:
    from .data.store import pack

    pack(args.pkl_root, args.store_root, progress=not args.quiet)
    print(f"packed store: {args.store_root}")
    return 0


def cmd_unpack(args) -> int:
    from .data.store import unpack

    unpack(args.store_root, args.pkl_root, progress=not args.quiet)
    print(f"pkl layout: {args.pkl_root}")
    return 0


def cmd_data_info(args) -> int:
    from .data.summary import dataset_info, format_info, write_contact_sheet

    info = dataset_info(args.root, partition=args.partition)
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    if args.sheet:
        write_contact_sheet(args.root, args.sheet)
        print(f"contact sheet: {args.sheet}")
    if info["bad_sequences"]:  # listed above, one line each; the exit status tells scripts
        print(f"gaitrec data info: error: {len(info['bad_sequences'])} unusable sequence file(s), first: "
              f"{info['bad_sequences'][0]}", file=sys.stderr)
        return 2
    return 0


def cmd_data_verify(args) -> int:
    from .data.summary import verify_dataset

    result = verify_dataset(args.root, progress=not args.quiet)
    if result["bad"]:
        for message in result["bad"][:5]:
            print(f"corrupt: {message}", file=sys.stderr)
        more = f" ({len(result['bad']) - 5} more not shown)" if len(result["bad"]) > 5 else ""
        print(f"gaitrec data verify: error: {len(result['bad'])} of {result['sequences']} sequences corrupt or "
              f"unusable in {args.root}{more}", file=sys.stderr)
        return 2
    print(f"{args.root} [{result['format']}]: {result['sequences']} sequences verified")
    return 0


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config of the model (with --checkpoint; default: the model shipped with gaitrec)")
    p.add_argument("--checkpoint", help="checkpoint of the model (with --config; default: the shipped model's weights)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of --config (repeatable)")
    add_device_arg(p)


def add_naming_args(p: argparse.ArgumentParser, json_help: str) -> None:
    """The options that commands naming people against a gallery share: threshold, JSON output, model, quiet."""
    p.add_argument("--threshold", type=float, default=None,
                   help="largest distance accepted as a match (default: calibrated from the gallery)")
    p.add_argument("--json", action="store_true", help=json_help)
    add_model_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def check_model_args(args) -> None:
    if bool(args.config) != bool(args.checkpoint):
        raise ConfigError("--config and --checkpoint go together: give both, or neither for the default model")
    if args.overrides and not args.config:
        raise ConfigError("--set applies to --config; the default model takes no overrides")


def load_embedder(args):
    """The model of --config/--checkpoint, or the default one when neither is given."""
    from .embed import Embedder

    check_model_args(args)
    if args.config:
        return Embedder.from_files(args.config, args.checkpoint, args.device, args.overrides)
    return Embedder.default(args.device)


def cmd_enroll(args) -> int:
    from .gallery import Gallery, check_name
    from .recognise import check_sources_exist, enroll_sources

    check_name(args.name)
    check_model_args(args)
    if Path(args.gallery).exists():  # a file that is not a gallery fails before the model loads
        Gallery.open(args.gallery).close()
    check_sources_exist(args.sources)
    embedder = load_embedder(args)
    added, total = enroll_sources(args.gallery, args.name, args.sources, embedder, longest=args.longest,
                                  progress=not args.quiet)
    print(f"enrolled {args.name}: {added} sequence(s) added, {total} in all; gallery {args.gallery} "
          f"(model {embedder.identity})")
    return 0


def cmd_identify(args) -> int:
    from .gallery import Gallery
    from .recognise import (check_sources_exist, gallery_threshold, identify_sequences, prepare_gallery,
                            read_sources)

    check_model_args(args)
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    with Gallery.open(args.gallery) as gallery:
        if not gallery.people():
            raise ConfigError(f"{args.gallery}: the gallery is empty; enrol someone first")
        threshold, origin = gallery_threshold(gallery, args.threshold)
        check_sources_exist(args.sources)
        embedder = load_embedder(args)
        prepare_gallery(gallery, embedder)
        sequences = read_sources(args.sources, not args.quiet)
        results = identify_sequences(gallery, embedder, sequences, args.top_k, threshold, progress=not args.quiet)
    queries = [{"source": s.source, "track": s.track,
                "matches": [{"name": m.name, "distance": round(m.distance, 6)} for m in r.matches],
                "decision": r.decision} for s, r in zip(sequences, results)]
    if args.json:
        print(json.dumps({"model": embedder.identity, "threshold": threshold, "threshold_origin": origin,
                          "queries": queries}, indent=2))
        return 0
    print(f"threshold: {'none' if threshold is None else f'{threshold:.4f}'}" + (f" ({origin})" if origin else ""))
    for s, q in zip(sequences, queries):
        ranked = ", ".join(f"{m['name']} {m['distance']:.4f}" for m in q["matches"])
        print(f"{s.label}: {q['decision']}  [{ranked}]")
    return 0


def cmd_watch(args) -> int:
    from .gallery import Gallery
    from .recognise import gallery_threshold, prepare_gallery
    from .watch import watch

    with Gallery.open(args.gallery) as gallery:
        if not gallery.people():
            raise ConfigError(f"{args.gallery}: the gallery is empty; enrol someone first")
        threshold, _ = gallery_threshold(gallery, args.threshold)
        embedder = load_embedder(args)
        prepare_gallery(gallery, embedder)
        source = int(args.source) if args.source.isdigit() else args.source  # a camera index
        result = watch(source, gallery, embedder, window=args.window, step=args.step, threshold=threshold,
                       annotate=args.annotate, announce=(lambda line: None) if args.json else print,
                       progress=not args.quiet)
    if args.json:
        print(json.dumps(dict(result, model=embedder.identity), indent=2))
        return 0
    named = ", ".join(f"track {t['track']}: {t['name']}" + (f" (nearest {t['nearest']})" if t["name"] != t["nearest"] else "")
                      for t in result["tracks"]) or "nobody named"
    print(f"{result['frames']} frames in {result['seconds']:.1f} s; {named}"
          + (f"; annotated video {args.annotate}" if args.annotate else ""))
    return 0


def cmd_gallery(args) -> int:
    from .gallery import Gallery

    with Gallery.open(args.gallery) as gallery:
        if args.gallery_command == "list":
            people = gallery.people()
            if args.json:
                print(json.dumps({"model": gallery.model.identity, "people": [
                    {"name": p.name, "sequences": p.sequences, "sources": p.sources} for p in people]}, indent=2))
                return 0
            print(f"model {gallery.model.identity}, {len(people)} people, "
                  f"{sum(p.sequences for p in people)} sequences")
            for p in people:
                print(f"{p.name}\t{p.sequences}\t{', '.join(p.sources)}")
        elif args.gallery_command == "remove":
            count = gallery.remove(args.name)
            print(f"removed {args.name} ({count} sequence(s)) from {args.gallery}")
        else:
            count = gallery.export(args.output, overwrite=args.overwrite)
            print(f"exported {count} sequence(s) to {args.output}")
    return 0


def cmd_extract(args) -> int:
    from .video import ExtractOptions, extract_video

    options = ExtractOptions(subtractor=args.subtractor, history=args.history, var_threshold=args.var_threshold,
                             process_width=args.process_width, min_height=args.min_height, min_area=args.min_area,
                             max_gap=args.max_gap, min_track_frames=args.min_track_frames, img_size=args.img_size)
    summary = extract_video(args.video, args.output, options, preview=args.preview, annotate=args.annotate,
                            overwrite=args.overwrite, progress=not args.quiet)
    if summary["tracks"] == 0:
        warnings.warn(f"{args.video}: nobody found (no track kept); try a lower --min-height or --min-track-frames")
    print(f"{summary['tracks']} tracks from {summary['frames']} frames at {summary['processing_fps']:.0f} frames/s "
          f"-> {args.output}" + (f", preview {args.preview}" if args.preview else "")
          + (f", annotated {args.annotate}" if args.annotate else ""))
    return 0


def cmd_adapt(args) -> int:
    """Fine-tune a model on the tracks of the user's footage (no labels) and write the adapted checkpoint."""
    from .adapt import adapt, base_model
    from .engine.checkpoint import save_checkpoint
    from .recognise import check_sources_exist

    check_model_args(args)
    output = Path(args.output)
    if output.is_dir():
        raise ConfigError(f"--output {output} is a directory; give the checkpoint file to write")
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; choose another --output or pass --overwrite to replace it")
    check_sources_exist(args.sources)
    cfg, weights, frame_size = base_model(args.config, args.checkpoint, args.overrides)
    given = {k: v for k, v in (("iterations", args.iterations), ("lr", args.lr)) if v is not None}
    state = adapt(cfg, weights, args.sources, seed=args.seed, device=args.device, frame_size=frame_size,
                  progress=not args.quiet, **given)
    save_checkpoint(output, state)
    done = state["adaptation"]
    print(f"adapted on {done['tracks']} tracks ({done['co_occurring_pairs']} pairs seen together), "
          f"{done['iterations']} iterations, loss {done['loss_start']:.3f} -> {done['loss_end']:.3f} (means of the "
          "first and last 20 batches)")
    print(f"checkpoint: {output} (model {done['identity']}, a new identity: enrol galleries again); use it with "
          f"--config {args.config or 'default_model'} --checkpoint {output}")
    return 0


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# (script, arguments) per suite; each script writes its own section of benchmarks/RESULTS.md with --write
BENCH_SUITES = {
    "smoke": [("bench_eval_scale.py", ["--subjects", "12"])],
    "quick": [("bench_eval_scale.py", ["--subjects", "100", "--write"]),
              ("bench_inference.py", ["--subjects", "4", "--repeats", "1", "--write"])],
    "full": [("bench_eval_scale.py", ["--subjects", "770", "--repeats", "3", "--write"]),
             ("bench_inference.py", ["--subjects", "8", "--repeats", "3", "--write"]),
             ("bench_growth.py", ["--write"]),
             ("bench_distance.py", ["--append", str(BENCHMARKS / "RESULTS.md")]),
             ("bench_models.py", ["--write", str(BENCHMARKS / "RESULTS.md")])],
}


def cmd_bench(args) -> int:
    import subprocess
    import time

    if not BENCHMARKS.is_dir():
        raise ConfigError(f"{BENCHMARKS} not found: gaitrec bench runs the benchmark scripts of a source checkout")
    suite = "smoke" if args.smoke else "quick" if args.quick else "full"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS.parent), os.environ.get("PYTHONPATH", "")])}
    for script, arguments in BENCH_SUITES[suite]:
        command = [sys.executable, str(BENCHMARKS / script), *arguments]
        if not args.quiet:
            print("$ " + " ".join(["python", f"benchmarks/{script}", *arguments]), flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL if args.quiet else None)
        if done.returncode != 0:
            print(f"gaitrec bench: benchmarks/{script} failed with exit status {done.returncode}", file=sys.stderr)
            return 1
        if not args.quiet:
            print(f"({script}: {time.perf_counter() - start:.0f} s)", flush=True)
    if suite != "smoke" and not args.quiet:
        print(f"tables written to {BENCHMARKS / 'RESULTS.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gaitrec", description="Gait recognition: train, test and evaluate "
                                     "OpenGait-compatible models.")
    parser.add_argument("--version", action="version", version=f"gaitrec {__import__('gaitrec').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a model from a config")
    add_config_args(p)
    add_device_arg(p)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this run")
    p.add_argument("--no-test", action="store_true", help="skip the test at the end of training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="embed the test set with a checkpoint, save features.npz and evaluate")
    add_config_args(p, run_dir=True)
    add_device_arg(p)
    p.add_argument("--checkpoint", help="checkpoint file (gaitrec or OpenGait; alone, a gaitrec checkpoint brings "
                   "its own config); default: a run directory's newest checkpoint (pass "
                   "RUN_DIR/checkpoints/<save_name>-best.pt for the best), or the config's evaluator_cfg.restore_hint")
    p.add_argument("--output", help="directory for features.npz and the report "
                   "(default: <run directory>/test/<checkpoint name>)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("evaluate", help="evaluate a features.npz with a benchmark protocol")
    p.add_argument("features", help="features.npz written by gaitrec test")
    p.add_argument("--protocol", required=True,
                   help=", ".join(protocol_rules()))
    p.add_argument("--metric", choices=["euc", "cos"], default="euc", help="distance (default: euc)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    p.add_argument("--probe-set", help="partition JSON with PROBE_SET (gait3d; default: the shipped Gait3D.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--output", help="also write the report (results.json, tables, plots) here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("params", help="count a config's model parameters")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help='print {"model": name, "params": count}')
    p.set_defaults(func=cmd_params)

    p = sub.add_parser(
        "export", help="export a trained model to TorchScript or ONNX (silhouettes in, embeddings out)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export the config's model with a checkpoint's weights. The exported model takes "
                    "'silhouettes' [N, T, H, W] float32 in [0, 1] (N and T dynamic) and returns 'embeddings' "
                    "[N, C, P]: one sequence per batch row, eval mode. Before OUT is written the export is run "
                    "at two (N, T) shapes and compared with PyTorch (exit 1 if it differs by more than "
                    "--tolerance). Metadata (input/output names and shapes, model, config hash) is stored in "
                    "the file: ONNX metadata_props, TorchScript extra file gaitrec.json.",
        epilog="example:\n  gaitrec export configs/gaitgl/gaitgl.yaml --checkpoint GaitGL-80000.pt "
               "--format onnx gaitgl.onnx\n\nONNX needs the optional packages: pip install 'gaitrec[onnx]'")
    add_config_args(p)
    p.add_argument("out", metavar="OUT", help="file to write (refused if it exists, unless --overwrite)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (gaitrec or OpenGait)")
    p.add_argument("--format", required=True, choices=["torchscript", "onnx"], help="export format")
    p.add_argument("--frame-size", metavar="HxW", help="input height x width (default: a sequence of the config's "
                   "dataset through the evaluator transform if the dataset is here, else 64x44)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest accepted max relative difference to PyTorch (default 1e-4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="generate SynthGait, train a small model, test it and print the table")
    p.add_argument("--output", help="directory for the demo's results (default: a new demo-output/run-N)")
    p.add_argument("--data", help="where the synthetic dataset is cached (default: ~/.cache/gaitrec)")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default: the demo's schedule)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="generate the SynthGait synthetic dataset")
    p.add_argument("--output", help="dataset directory (new, empty, or an existing SynthGait dataset; default: none, preview only)")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects (default: 50)")
    p.add_argument("--frames", type=int, default=None, help="frames per sequence (default: 30)")
    p.add_argument("--size", type=int, default=64, help="output frame size (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--views", type=lambda text: text.split(","), help="comma-separated subset of views, e.g. 000,090 (default: all 11)")
    p.add_argument("--types", type=lambda text: text.split(","), help="comma-separated subset of types, e.g. nm-01,cl-01 (default: all 10)")
    p.add_argument("--raw", action="store_true", help="write full-frame PNGs in CASIA-B's raw layout")
    p.add_argument("--preview", help="write a contact sheet PNG of the chosen views and types (default: none)")
    p.add_argument("--domain", choices=["street", "heldout"], default=None,
                   help="instead of CASIA-B's studio: tracks as a street camera sees them (street), or the held-out "
                   "domain kept for measuring transfer (default: none)")
    p.add_argument("--walks", type=int, default=None, help="tracks per subject with --domain (default: 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("pretreat", help="raw silhouette frames -> aligned arrays (pkl layout or packed store)")
    p.add_argument("input", help="raw dataset root")
    p.add_argument("output", help="output root")
    p.add_argument("--dataset", default="casia-b", choices=[b.name.lower() for b in benchmarks_with("raw_layout")],
                   help="raw layout (default casia-b)")
    p.add_argument("--img-size", type=int, default=64, help="output height and width (default 64; GLN uses 128)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel processes (default: the cores not busy with other work, or $GAITREC_THREADS)")
    p.add_argument("--format", default="pkl", choices=["pkl", "store"], help="output format")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretreat)

    p = sub.add_parser("pack", help="convert a pkl-layout dataset into a packed store")
    p.add_argument("pkl_root", help="dataset in OpenGait's layout <subject>/<type>/<view>/*.pkl")
    p.add_argument("store_root", help="packed store to create (a new or empty directory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("unpack", help="convert a packed store back into the pkl layout")
    p.add_argument("store_root", help="packed store written by gaitrec pack or pretreat --format store")
    p.add_argument("pkl_root", help="directory to write OpenGait's .pkl layout into")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_unpack)

    from .video.options import ExtractOptions

    defaults = ExtractOptions()
    p = sub.add_parser("extract", help="people in a video -> tracked, pretreated silhouette sequences",
                       description="Find the people walking in a video (background subtraction, no downloaded "
                       "weights), follow each one, and write one pretreated silhouette sequence per person in "
                       "OpenGait's layout OUTPUT/<id>/video/000/<id>.pkl plus OUTPUT/tracks.json (boxes per frame). "
                       "The camera must be still.")
    p.add_argument("video", help="video file, folder of frame images, camera index (0) or stream URL")
    p.add_argument("output", help="output directory (new or empty)")
    p.add_argument("--preview", help="write a contact sheet PNG, a row of silhouettes per track (default: none)")
    p.add_argument("--annotate", help="write a copy of the video with boxes and track ids (.mp4 or .avi; default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous extraction in OUTPUT")
    p.add_argument("--subtractor", choices=["mog2", "knn"], default=defaults.subtractor, help="background model")
    p.add_argument("--history", type=int, default=defaults.history, help="frames the background model remembers")
    p.add_argument("--var-threshold", type=float, default=defaults.var_threshold,
                   help="foreground threshold (MOG2 squared Mahalanobis distance)")
    p.add_argument("--process-width", type=int, default=defaults.process_width,
                   help="wider frames are processed downscaled to this width")
    p.add_argument("--min-height", type=int, default=defaults.min_height, help="shortest person, in pixels")
    p.add_argument("--min-area", type=int, default=defaults.min_area, help="smallest person blob, in pixels")
    p.add_argument("--max-gap", type=int, default=defaults.max_gap,
                   help="frames a lost person is still looked for before the track ends")
    p.add_argument("--min-track-frames", type=int, default=defaults.min_track_frames,
                   help="shortest kept track, in silhouettes")
    p.add_argument("--img-size", type=int, default=defaults.img_size, help="aligned silhouette size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("adapt", help="adapt a model to your own footage, without labels (tracks as identities)",
                       description="Fine-tune a trained model (default: the shipped one) on the people of your own "
                       "footage, without labels: windows of one track are one person; tracks visible at the same "
                       "moment are different people (the only negatives); tracks at different moments may be one "
                       "person and are not pushed apart. Uses the model's triplet loss and training augmentations. "
                       "Writes a checkpoint (weights, config, iteration) for --checkpoint of enroll, identify and "
                       "watch. SOURCE: a directory written by gaitrec extract, or a video (extracted here with the "
                       "default options).")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="extraction directories or videos")
    p.add_argument("--output", "-o", required=True, help="checkpoint file to write (refused if it exists, unless "
                   "--overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    # Defaults live in gaitrec.adapt (importing it here would load torch for every command).
    p.add_argument("--iterations", type=int, default=None, help="adaptation steps (default: 300)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 0.0001)")
    p.add_argument("--seed", type=int, default=0, help="random seed (batches, frames, augmentation)")
    add_model_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("data", help="dataset inspection")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    q = data_sub.add_parser("info", help="subjects, sequences, frame counts and gaps of a dataset")
    q.add_argument("root", help="dataset root (pkl layout or packed store)")
    q.add_argument("--partition", help="partition JSON to check the dataset against (default: none)")
    q.add_argument("--sheet", help="write a contact sheet PNG of random sequences (default: none)")
    q.add_argument("--json", action="store_true", help="print as JSON")
    q.set_defaults(func=cmd_data_info)
    q.epilog, q.formatter_class = EXAMPLES["data"], HelpFormatter
    q = data_sub.add_parser("verify", help="read every sequence and check it (store: checksums; pkl: every file)",
                            description="Read every sequence of a dataset and check it: a packed store against "
                            "its checksums (index, each sequence, whole file), a pkl-layout dataset by loading "
                            "every file. Exits 2 naming the first bad sequences.",
                            epilog="example: gaitrec data verify data/CASIA-B-store", formatter_class=HelpFormatter)
    q.add_argument("root", help="dataset root (pkl layout or packed store)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_data_verify)

    model_note = ("Without --config/--checkpoint the model shipped with gaitrec is used. SOURCE: a pretreated "
                  ".pkl sequence, a folder of them, or a video (file, or folder of frames).")
    p = sub.add_parser("enroll", help="add a person's sequences to a gallery (created if missing)",
                       description="Embed SOURCE(s) and store them under NAME in GALLERY (SQLite; created on the "
                       "first enrolment, which also fixes the gallery's model). " + model_note,
                       epilog="example: gaitrec enroll people.db alice walks/alice/ --config cfg.yaml "
                       "--checkpoint model.pt")
    p.add_argument("gallery", metavar="GALLERY", help="gallery file (SQLite)")
    p.add_argument("name", metavar="NAME", help="the person's name")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="sequences of this person")
    add_model_args(p)
    p.add_argument("--longest", action="store_true",
                   help="from a video with several people, enrol the longest track (default: refuse such a video)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("identify", help="name the people walking in sequences or videos",
                       description="For each sequence (or tracked person) of SOURCE(s): the nearest enrolled "
                       "people with distances, and a decision, the nearest name or 'unknown' beyond the "
                       "threshold. The default threshold is the distance between the two closest different "
                       "people of the gallery. The model must be the gallery's. " + model_note,
                       epilog="example: gaitrec identify people.db clip.pkl --top-k 3 --json --config cfg.yaml "
                       "--checkpoint model.pt")
    p.add_argument("gallery", metavar="GALLERY", help="gallery file (SQLite)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="sequences to identify")
    p.add_argument("--top-k", type=int, default=5, help="names listed per query (default: 5)")
    add_naming_args(p, 'print {"model", "threshold", "queries": [{"source", "track", "matches": [{"name", '
                    '"distance"}], "decision"}]}')
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("watch", help="name people live as they walk in a video, camera or stream",
                       description="Track the people of SOURCE and identify each on a sliding window of its "
                       "latest silhouettes against GALLERY, printing a line when a person is first named and "
                       "whenever the name changes; at the end, each track's final name (the decision of most "
                       "of its windows). " + model_note)
    p.add_argument("source", metavar="SOURCE", help="video file, folder of frame images, camera index (0) or stream URL")
    p.add_argument("--gallery", required=True, help="gallery file (SQLite) made by gaitrec enroll")
    p.add_argument("--window", type=int, default=30, help="silhouettes per identification (default: 30)")
    p.add_argument("--step", type=int, default=10, help="new silhouettes between identifications (default: 10)")
    p.add_argument("--annotate", help="write the video with boxes and names (.mp4 or .avi; default: none)")
    add_naming_args(p, 'print {"model", "source", "fps", "frames", "seconds", "tracks": [{"track", "first_frame", '
                    '"name", "nearest", "windows"}]} instead of live lines')
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("bench", help="run the benchmark suite and write its tables into benchmarks/RESULTS.md",
                       description="Run the benchmark scripts of benchmarks/ (a source checkout) one after another; "
                       "each writes its section of benchmarks/RESULTS.md with the machine's load beside its figures. "
                       "Default: the full suite (tens of minutes on 2 CPUs).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced sizes (about 2 minutes on an idle 2-CPU machine)")
    mode.add_argument("--smoke", action="store_true", help="check that the suite runs, at tiny size; writes nothing")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("gallery", help="list, remove or export the people of a gallery",
                       description="Inspect and edit a gallery made by gaitrec enroll.",
                       epilog="examples: gaitrec gallery people.db list; gaitrec gallery people.db remove alice; "
                       "gaitrec gallery people.db export people.npz")
    p.add_argument("gallery", metavar="GALLERY", help="gallery file (SQLite)")
    gallery_sub = p.add_subparsers(dest="gallery_command", metavar="SUBCOMMAND", required=True,
                                   help="list, remove or export")
    q = gallery_sub.add_parser("list", help="names with their sequence counts and sources",
                               epilog="example: gaitrec gallery people.db list --json")
    q.add_argument("--json", action="store_true", help='print {"model", "people": [{"name", "sequences", "sources"}]}')
    q = gallery_sub.add_parser("remove", help="remove a person and all their sequences",
                               epilog="example: gaitrec gallery people.db remove alice")
    q.add_argument("name", metavar="NAME", help="the enrolled name to remove")
    q = gallery_sub.add_parser("export", help="write names and embeddings to .npz (arrays) or .json",
                               epilog="example: gaitrec gallery people.db export people.npz")
    q.add_argument("output", metavar="OUT", help="OUT.npz (names, sources, tracks, frames, embeddings [N, C, P], model_identity, "
                   "model_config) or OUT.json")
    q.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=cmd_gallery)
    for name, command in sub.choices.items():
        command.formatter_class = HelpFormatter
        command.epilog = command.epilog or EXAMPLES.get(name)
    return parser


def command_name(args) -> str:
    """``gaitrec train``, ``gaitrec data info``: how a message names the command that failed."""
    sub = getattr(args, "data_command", None)
    return f"gaitrec {args.command}" + (f" {sub}" if sub else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warnings
    threading.excepthook = _quiet_disk_errors_in_threads
    try:
        if args.command not in NO_TORCH_COMMANDS:
            from .threads import apply_thread_count

            apply_thread_count()
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return status
    except BrokenPipeError:
        # `gaitrec evaluate ... | head`: the reader has what it wanted; stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as err:
        if os.environ.get("GAITREC_DEBUG"):
            raise
        print(f"{command_name(args)}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command_name(args)}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        print(f"gaitrec {args.command}: internal error, this is a bug in gaitrec; please report it with the "
              "traceback below", file=sys.stderr)
        raise


def _quiet_disk_errors_in_threads(hook_args) -> None:
    """A full disk also fails background writers (TensorBoard's thread): the main thread reports it in one line
    naming the file, so the thread's traceback is not printed. Other thread errors keep theirs."""
    if isinstance(hook_args.exc_value, OSError) and hook_args.exc_value.errno in (errno.ENOSPC, errno.EDQUOT,
                                                                                  errno.EFBIG):
        return
    threading.__excepthook__(hook_args)


def _one_line(err: BaseException) -> str:
    """The first line of an error; an OSError names its file ("No space left on device: run/x.pt")."""
    if isinstance(err, OSError) and err.strerror:
        names = [str(n) for n in (err.filename, err.filename2) if n is not None]
        return f"{err.strerror}: {' -> '.join(names)}" if names else err.strerror
    text = str(err).strip()
    message = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, ValueError) and not isinstance(err, UserError):
        message += " (if your input looks right, this may be a bug: rerun with GAITREC_DEBUG=1 for the traceback)"
    return message


if __name__ == "__main__":
    raise SystemExit(main())
