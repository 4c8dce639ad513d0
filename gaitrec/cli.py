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

from .errors import UserError
from .registry import ConfigError

# Errors that mean "the input is wrong", printed as one line; anything else is a bug and keeps its traceback.
# gaitrec raises UserError subclasses for bad input; OSError covers files the user named (missing, unwritable,
# disk full). A plain ValueError is still printed as one line, with a hint, for commands not yet converted to
# UserError; remove it from this tuple once every command raises UserError.
USER_ERRORS = (UserError, OSError, ValueError)


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML, OpenGait schema)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set trainer_cfg.total_iter=100 (repeatable)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available)")


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
    print(f"run directory: {result['run_dir']}")
    return 0


def cmd_test(args) -> int:
    from .engine import distributed
    from .engine.checkpoint import checkpoint_path
    from .engine.inference import load_trained_model, run_test
    from .engine.trainer import run_dir_of
    from .evaluation.report import print_table

    cfg = load(args)
    ev = cfg["evaluator_cfg"]
    if args.checkpoint:
        path = Path(args.checkpoint)
    elif isinstance(ev["restore_hint"], str):
        path = Path(ev["restore_hint"])
    elif ev["restore_hint"] > 0:
        path = checkpoint_path(run_dir_of(cfg, ev["save_name"]), ev["save_name"], ev["restore_hint"])
    else:
        raise ConfigError("no checkpoint: pass --checkpoint PATH or set evaluator_cfg.restore_hint")
    ctx = distributed.init(args.device)
    model = load_trained_model(cfg, path, ctx.device, strict=ev["restore_ckpt_strict"])
    output = Path(args.output) if args.output else run_dir_of(cfg, ev["save_name"]) / "test" / path.stem
    result = run_test(cfg, model, ctx, output, overwrite=args.overwrite, progress=not args.quiet)
    if result is not None:
        print(print_table(result))
        print(f"features and report: {output}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.features import load_features
    from .evaluation.protocols import evaluate
    from .evaluation.report import print_table, write_report

    if args.probe_set and args.protocol != "gait3d":
        raise ConfigError(f"--probe-set applies to the gait3d protocol only, not {args.protocol}")
    features = load_features(args.features)
    result = evaluate(features, args.protocol, metric=args.metric, rerank=args.rerank, probe_set=args.probe_set)
    if args.output:
        write_report(result, args.output, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result, indent=2))
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


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(output=args.output, data=args.data, iterations=args.iterations, progress=not args.quiet)
    return 0


def cmd_synth(args) -> int:
    from .synth import generate_dataset, write_preview

    if args.preview:
        write_preview(args.preview, seed=args.seed, size=args.size)
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
    from .data.inspect import dataset_info, format_info, write_contact_sheet

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
    from .data.inspect import verify_dataset

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
    add_config_args(p)
    add_device_arg(p)
    p.add_argument("--checkpoint", help="checkpoint file (gaitrec or OpenGait); default: evaluator_cfg.restore_hint")
    p.add_argument("--output", help="directory for features.npz and the report")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("evaluate", help="evaluate a features.npz with a benchmark protocol")
    p.add_argument("features", help="features.npz written by gaitrec test")
    p.add_argument("--protocol", required=True,
                   help="casia-b, casia-b-cross-view, oumvlp, casia-e, sustech1k, grew, grew-submission, gait3d")
    p.add_argument("--metric", choices=["euc", "cos"], default="euc", help="distance (default: euc)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    p.add_argument("--probe-set", help="partition JSON with PROBE_SET (gait3d)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--output", help="also write the report (results.json, tables, plots) here")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("params", help="count a config's model parameters")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help='print {"model": name, "params": count}')
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("demo", help="generate SynthGait, train a small model, test it and print the table")
    p.add_argument("--output", help="directory for the demo's results (default: a new demo-output/run-N)")
    p.add_argument("--data", help="where the synthetic dataset is cached (default: ~/.cache/gaitrec)")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default: the demo's schedule)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="generate the SynthGait synthetic dataset")
    p.add_argument("--output", help="dataset directory (new, empty, or an existing SynthGait dataset)")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects")
    p.add_argument("--frames", type=int, default=None, help="frames per sequence")
    p.add_argument("--size", type=int, default=64, help="output frame size (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--views", type=lambda text: text.split(","), help="comma-separated subset of views, e.g. 000,090")
    p.add_argument("--types", type=lambda text: text.split(","), help="comma-separated subset of types, e.g. nm-01,cl-01")
    p.add_argument("--raw", action="store_true", help="write full-frame PNGs in CASIA-B's raw layout")
    p.add_argument("--preview", help="write a contact sheet PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("pretreat", help="raw silhouette frames -> aligned arrays (pkl layout or packed store)")
    p.add_argument("input", help="raw dataset root")
    p.add_argument("output", help="output root")
    p.add_argument("--dataset", default="casia-b", choices=["casia-b", "oumvlp", "grew", "gait3d"],
                   help="raw layout (default casia-b)")
    p.add_argument("--img-size", type=int, default=64, help="output height and width (default 64; GLN uses 128)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--format", default="pkl", choices=["pkl", "store"], help="output format")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretreat)

    p = sub.add_parser("pack", help="convert a pkl-layout dataset into a packed store")
    p.add_argument("pkl_root")
    p.add_argument("store_root")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("unpack", help="convert a packed store back into the pkl layout")
    p.add_argument("store_root")
    p.add_argument("pkl_root")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("data", help="dataset inspection")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    q = data_sub.add_parser("info", help="subjects, sequences, frame counts and gaps of a dataset")
    q.add_argument("root", help="dataset root (pkl layout or packed store)")
    q.add_argument("--partition", help="partition JSON to check the dataset against")
    q.add_argument("--sheet", help="write a contact sheet PNG of random sequences")
    q.add_argument("--json", action="store_true", help="print as JSON")
    q.set_defaults(func=cmd_data_info)
    q = data_sub.add_parser("verify", help="read every sequence and check it (store: checksums; pkl: every file)",
                            description="Read every sequence of a dataset and check it: a packed store against "
                            "its checksums (index, each sequence, whole file), a pkl-layout dataset by loading "
                            "every file. Exits 2 naming the first bad sequences. Example: gaitrec data verify "
                            "data/CASIA-B-store")
    q.add_argument("root", help="dataset root (pkl layout or packed store)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_data_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warnings
    threading.excepthook = _quiet_disk_errors_in_threads
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if os.environ.get("GAITREC_DEBUG"):
            raise
        print(f"gaitrec {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gaitrec {args.command}: interrupted", file=sys.stderr)
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
