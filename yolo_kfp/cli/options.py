"""The argparse types and option groups that several commands share: class lists, JSON values, compile options,
the pipeline server and its token, and ``--param``."""

import argparse
import json

from yolo_kfp.params import run_parameters
from yolo_kfp.params.validation import MAX_NAME, is_shown_name
from yolo_kfp.pipeline.compile_options import compile_options, option_default


class DefaultsShown(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, or says it has none, unless it says so itself, is required
    or is a flag; descriptions and epilogs (``--param``'s list) as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs == 0 or action.required or "default" in text or action.default is argparse.SUPPRESS:
            return text
        default = action.default
        shown = "none" if default in (None, "") else default if isinstance(default, str) else json.dumps(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def seconds(floor: float, ceiling: float):
    """An argparse type: a number of seconds from ``floor`` to ``ceiling`` (no NaN, no infinity)."""
    return _bounded(float, floor, ceiling, "a number of seconds", " seconds", "seconds")


def count(floor: int, ceiling: int):
    """An argparse type: a whole number from ``floor`` to ``ceiling``."""
    return _bounded(int, floor, ceiling, "a whole number", "", "count")


def _bounded(convert, floor: float, ceiling: float, what: str, unit: str, name: str):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text[:40]!r}") from None
        if not floor <= value <= ceiling:  # NaN fails both
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not from {floor:g} to {ceiling:g}{unit}")
        return value

    parse.__name__ = name  # what argparse calls the type in its messages
    return parse


def shown_name(text: str) -> str:
    """An argparse type: a name the server shows and this command may print (an experiment, a run, a version):
    ``validation.is_shown_name``."""
    if not is_shown_name(text):
        raise argparse.ArgumentTypeError(f"wants 1 to {MAX_NAME} printable characters, not {ascii(text[:60])}")
    return text


def classes(text: str) -> list[str]:
    """A JSON list, or names separated by commas."""
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [name.strip() for name in text.split(",") if name.strip()]


def json_object(kind: type):
    """An argparse type: JSON text of ``kind`` (a dict or a list)."""
    def parse(text: str):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"wants a JSON {'object' if kind is dict else 'list'}, not {text!r}")
        return value

    parse.__name__ = f"JSON {kind.__name__}"
    return parse


def add_option(parser, option_field) -> None:
    """``--name`` for a compile option, from its declaration (``yolo_kfp.pipeline.compile_options.option``)."""
    meta, default = option_field.metadata, option_default(option_field)
    settings = {"help": meta["help"], "default": default}  # DefaultsShown adds the default
    if meta["kind"] in (dict, list):
        settings.update(type=json_object(meta["kind"]), metavar="JSON")
    elif meta["kind"] is int:
        settings["type"] = int
    settings.update({k: v for k, v in meta.items() if k not in ("help", "kind")})
    parser.add_argument(f"--{option_field.name.replace('_', '-')}", **settings)


def add_server_target(p) -> None:
    add_option(p, next(f for f in compile_options() if f.name == "server"))


def add_compile_options(p) -> None:
    for option_field in compile_options():
        add_option(p, option_field)


def add_token_options(p, scope: str, default: str = "") -> None:
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token-file", metavar="FILE", help=f"{scope}a file holding the bearer token, e.g. "
                                                            f"--token-file <(oc whoami -t){default}")
    token.add_argument("--token", help=f"{scope}the bearer token itself: visible to anyone in ps and kept in "
                                       "shell history; prefer --token-file or an environment variable")
    p.add_argument("--allow-plain-http-token", action="store_true",
                   help="send the token to an http:// server too (readable on the way): only where the network "
                        "between is yours, e.g. a test server on 127.0.0.1")


def add_server_options(p) -> None:
    p.add_argument("--host", required=True, help="the pipeline server's URL (the DSPA route)")
    add_token_options(p, "", " (without it or --token: $KFP_TOKEN, $KF_PIPELINES_TOKEN, the pod's token)")
    p.add_argument("--ca-bundle", help="CA bundle for the server's certificate (default: in a workbench the "
                                       "service CA for *.svc hosts, else the cluster's trusted bundle, else the "
                                       "system store)")
    p.add_argument("--insecure", action="store_true", help="do not verify the route's certificate")
    p.add_argument("--ui-host", help="a KFP UI for run links (default: in a workbench the OpenShift AI "
                                     "dashboard's run page, else --host)")


def add_param_option(parser) -> None:
    """``--param``, with every run parameter (type, default, range, description) listed under ``--help``."""
    parser.add_argument("--param", action="append", metavar="KEY=VALUE",
                        help="set a run parameter (JSON values, e.g. epochs=10 or classes='[\"Car\"]'); listed below")
    parser.epilog = "run parameters:\n" + run_parameters.help_text()
