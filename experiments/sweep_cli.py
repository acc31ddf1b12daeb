"""train.py's sweep mode: `-m KEY=V1,V2 ...` makes a sweep folder and runs its members;
`-r SWEEP_FOLDER` continues one; `--member I` runs one member (a SLURM array task)."""
import sys
import time
from pathlib import Path

from config.cli import option_dest, parse_command_line
from parse_config import ConfigParser
from utils import ConfigError
from utils.errors import TrainingStopped

from .sweep_args import SWEEP_ONLY_FLAGS, add_sweep_arguments, is_sweep_command  # noqa: F401 (public here)
from .sweep_grid import REPEAT_KEYS, member_label, members, parse_grid, parsed_values
from .sweep_manifest import member_state, new_sweep_dir, read_manifest, write_sweep
from .sweep_runner import SweepRunner
from .sweep_summary import write_summary


def run_sweep(argv, make_arg_parser):
    parser, options = make_arg_parser()
    args = parse_command_line(parser, options, argv)
    _check_sweep_args(args, options)
    if args.multirun:
        sweep_dir, manifest = create_sweep(args, options, make_arg_parser)
        print(f"Sweep of {len(manifest['members'])} runs: {sweep_dir}", flush=True)
    else:
        sweep_dir = args.resume.rstrip("/")
        manifest = read_manifest(sweep_dir)
    if args.prepare_only:
        print(f"sbatch --array=0-{len(manifest['members']) - 1} scripts/slurm_sweep.sbatch {sweep_dir}")
        return
    run_members(sweep_dir, manifest, args)


def create_sweep(args, options, make_arg_parser):
    """Resolve and check every member's config, then write the sweep folder."""
    grid = parse_grid(args.multirun)
    points = members(grid)
    common = list(args.override or [])
    for opt in options:  # --lr / --bs as the overrides they stand for
        value = getattr(args, option_dest(opt.flags), None)
        if value is not None:
            common.append(f"{opt.target.replace(';', '.')}={value}")
    configs = []
    for point in points:  # each member's config goes through train.py's own command-line path
        argv = ["-c", args.config, *(["--trust"] if args.trust else [])]
        for text in common + [f"{k}={v}" for k, v in point.items()]:
            argv += ["-o", text]
        configs.append(ConfigParser.from_args(make_arg_parser()[0], create_dirs=False, argv=argv).config)
    sweep_dir = new_sweep_dir(configs[0]["trainer"]["save_dir"], configs[0]["name"])
    labels = [member_label(i, point) for i, point in enumerate(points)]
    for label, config in zip(labels, configs):
        config["trainer"]["save_dir"] = str(sweep_dir / label)  # the member's runs live in its folder
    entries = [(label, parsed_values(point)) for label, point in zip(labels, points)]
    return sweep_dir, write_sweep(sweep_dir, grid, entries, configs, REPEAT_KEYS, args.test)


def run_members(sweep_dir, manifest, args):
    sweep_dir = Path(sweep_dir)
    indices = None
    if args.member is not None:
        if not 0 <= args.member < len(manifest["members"]):
            raise ConfigError(f"--member {args.member} is not a member of {sweep_dir}; its members are "
                              f"0..{len(manifest['members']) - 1}.")
        indices = {args.member}
    runner = SweepRunner(sweep_dir, manifest, args.jobs or 1, args.test or manifest.get("run_test", False),
                         take_over=args.member is not None,
                         devices=args.device.split(",") if args.device else None)
    started = time.monotonic()
    outcomes = runner.run(indices)
    print(f"Sweep ran {len(outcomes)} members in {time.monotonic() - started:.1f} s with --jobs {args.jobs or 1}.")
    if runner.stop_signal:
        raise TrainingStopped(f"Sweep stopped. Continue it with: python train.py -r {sweep_dir}",
                              128 + runner.stop_signal)
    states = [member_state(sweep_dir, m, manifest["name"])[0] for m in manifest["members"]]
    table, path = write_summary(sweep_dir, manifest)
    if table is not None:
        print(f"\n{table}\n\nSummary of {states.count('finished')}/{len(states)} finished members: {path}")
    failed = [m["folder"] for m, s in zip(manifest["members"], states)
              if s not in ("finished", "running") and (indices is None or m["index"] in indices)]
    if failed:
        print(f"{len(failed)} member(s) did not finish: {', '.join(failed)}. See output.log in their folders; "
              f"python train.py -r {sweep_dir} retries them.", file=sys.stderr)
        sys.exit(1)


def _check_sweep_args(args, options):
    if args.dry_run or args.print_config:
        raise ConfigError("--dry-run and --print-config work on one run: give one value per key with -o "
                          "instead of -m to see that member.")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs is {args.jobs}; it must be at least 1.")
    if args.multirun and args.resume:
        raise ConfigError("-m starts a new sweep and -r continues one; give one of them.")
    if args.multirun and args.config is None:
        raise ConfigError("-m needs -c CONFIG: the config that every member starts from.")
    if args.member is not None and args.multirun:
        raise ConfigError("--member runs one member of an existing sweep: use it with -r SWEEP_FOLDER.")
    extra = [flag for flag, given in (("-c", args.config), ("-o", args.override),
                                      *((o.flags[0], getattr(args, option_dest(o.flags), None)) for o in options))
             if given]
    if args.resume and extra:
        raise ConfigError(f"-r {args.resume} continues a sweep with its members' own configs; {', '.join(extra)} "
                          "cannot change them. Start a new sweep with -c and -m instead.")
