"""The command-line flags that train.py, test.py and the sweeps share. Only argparse: the
programs read their command line (and answer --help) before they import torch."""


def add_common_arguments(parser):
    """Flags shared by train.py and test.py (the template's -c/-r/-d are added by the scripts)."""
    parser.add_argument("-o", "--override", action="append", metavar="KEY.PATH=VALUE",
                        help="set any config key, e.g. -o optimizer.args.lr=0.01 (value parsed as "
                             "JSON where it parses); prefix the key with + to add a new key")
    parser.add_argument("--trust", action="store_true",
                        help="allow a checkpoint's config to import modules outside the project and torch")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")


def add_custom_options(parser, options):
    """The template's custom options (CustomArgs such as --lr and --bs) as flags of `parser`;
    an option may also carry help, nargs, const and metavar (train.py's --profile [N])."""
    for opt in options:
        extra = {key: getattr(opt, key) for key in ("help", "nargs", "const", "metavar")
                 if getattr(opt, key, None)}
        parser.add_argument(*opt.flags, default=None, type=opt.type, **extra)


def parse_command_line(parser, options=(), argv=None):
    """`parser` with the custom `options` and the common flags added, applied to `argv` (default
    sys.argv). argparse exits here for --help and for a mistyped flag."""
    add_custom_options(parser, options)
    add_common_arguments(parser)
    return parser.parse_args(argv)


def option_dest(flags):
    """argparse's attribute name for an option: its first long flag."""
    long_flags = [flag for flag in flags if flag.startswith("--")] or flags
    return long_flags[0].lstrip("-").replace("-", "_")
