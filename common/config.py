"""The constants block is the configuration: `--NAME=value` overrides, presets, printing and saving; and a script's
resolved settings asked of the script itself (script_config), since no code imports a script."""
import ast
import difflib
import functools
import json
import os
import subprocess
import sys
from pathlib import Path


class ConfigError(ValueError):
    """A setting the user gave cannot be used; the message says which and how to fix it."""


def _parse(name, text, default):
    if isinstance(default, str) and text[:1] not in "\"'":
        return text  # strings need no quotes on the command line
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if default is None:
            return text  # an unset path or name: take the text as it is
        raise ConfigError(f"--{name}={text}: expected a {type(default).__name__} like {default!r}") from None
    if default is None:
        return value
    if value is None:  # a setting that has a value by default needs one (None would crash later)
        raise ConfigError(f"--{name}={text}: expected a {type(default).__name__} like {default!r}")
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"--{name}={text}: expected True or False") if isinstance(default, bool) else ConfigError(
            f"--{name}={text}: expected a {type(default).__name__} like {default!r}"
        )
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"--{name}={text}: expected a {type(default).__name__} like {default!r}")
    return value


def parse_overrides(argv, defaults):
    """['--NAME=value', ...] -> {NAME: typed value}; unknown names and mistyped values raise ConfigError."""
    out = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"cannot read {arg!r}: settings look like --NAME=value, e.g. --EPOCHS=3")
        name, text = arg[2:].split("=", 1)
        if name not in defaults:
            close = [k for k in defaults if k.lower() == name.lower()] or difflib.get_close_matches(name, defaults, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown setting --{name}{hint}; known: {', '.join(sorted(defaults))}")
        out[name] = _parse(name, text, defaults[name])
    return out


def config_names(namespace):
    """The configurable constants of a script: module-level UPPER_CASE names with plain values."""
    plain = (int, float, str, bool, type(None), list, tuple)
    return [k for k, v in namespace.items() if k.isupper() and not k.startswith("_") and isinstance(v, plain)]


def configure(namespace, argv=None, presets=None, preset_key="PRESET", data_key="DATA_DIR"):
    """The resolved settings of a script: its constants (`namespace`, e.g. globals()), a preset, then overrides.

    Order: constants block < preset named by namespace[preset_key] < --NAME=value. PRESET='auto' picks
    'demo' when the data setting (data_key, DATA_DIR) is None, else 'paper'. Returns (config dict, names the preset
    changed); `namespace` itself is left alone, so a script's module keeps its defaults and main() can run twice in one process.
    """
    argv = sys.argv[1:] if argv is None else argv
    defaults = {k: namespace[k] for k in config_names(namespace)}
    overrides = parse_overrides(argv, defaults)
    config = {**defaults, **{k: v for k, v in overrides.items()}}
    preset_changed = []
    if presets:
        if config.get(preset_key) == "auto":  # the demo preset when there is no data, else the paper's settings
            config[preset_key] = "demo" if config.get(data_key) is None else "paper"
        preset = presets.get(config.get(preset_key))
        if preset is None and config.get(preset_key) is not None:
            raise ConfigError(f"unknown {preset_key} {config[preset_key]!r}; choose from {', '.join(map(repr, presets))}")
        for k, v in (preset or {}).items():
            if k not in overrides:
                config[k] = v
                preset_changed.append(k)
    return config, preset_changed


# ----------------------------------------------------------------------------- checks
# Each check raises ConfigError with one line naming the setting, so every setting can be validated before a run
# folder exists (a typo must never leave a folder that then refuses the corrected command).


def check_number(cfg, name, lo=None, hi=None, *, integer=False, lo_open=False, hi_open=False, none_ok=False):
    """cfg[name] is a number (an int when `integer`) within [lo, hi] (open ends as asked); None only if none_ok."""
    v = cfg[name]
    if v is None and none_ok:
        return v
    kind = "an integer" if integer else "a number"
    ok = isinstance(v, int if integer else (int, float)) and not isinstance(v, bool)
    ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        low = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        high = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        bounds = " and ".join(b for b in (low, high) if b)
        raise ConfigError(f"--{name}={v!r}: must be {kind}{' ' + bounds if bounds else ''}"
                          + (" (or None)" if none_ok else ""))
    return v


def check_tuple(cfg, name, length, lo=None, hi=None, *, increasing=False, example=None):
    """cfg[name] is `length` numbers, each within [lo, hi], non-decreasing when `increasing`."""
    v = cfg[name]
    ok = isinstance(v, (tuple, list)) and len(v) == length
    ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ok = ok and all((lo is None or x >= lo) and (hi is None or x <= hi) for x in v)
    ok = ok and (not increasing or all(a <= b for a, b in zip(v, v[1:])))
    if not ok:
        rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else f" >= {lo}" if lo is not None else ""
        order = ", low to high" if increasing else ""
        eg = f", e.g. {tuple(example)!r}" if example is not None else ""
        raise ConfigError(f"--{name}={v!r}: needs {length} numbers{rng}{order}{eg}")
    return tuple(v)


def check_choice(cfg, name, choices):
    if cfg[name] not in choices:
        raise ConfigError(f"--{name}={cfg[name]!r}: choose one of {', '.join(map(str, choices))}")
    return cfg[name]


def check_paths(cfg, *names):
    """cfg[name] is a path or a name (a str) or None, for each name. A number becomes its text: `--DATA_DIR=2019`
    names a folder of digits, which the configurator, seeing no quotes, read as an int."""
    for name in names:
        if isinstance(cfg[name], int) and not isinstance(cfg[name], bool):
            cfg[name] = str(cfg[name])
        if cfg[name] is not None and not isinstance(cfg[name], str):
            raise ConfigError(f"--{name}={cfg[name]!r}: expected a path or a name")


def format_config(config, preset_changed=()):
    width = max(map(len, config))
    return "\n".join(
        f"  {k:<{width}} = {v!r}" + ("   (preset)" if k in preset_changed else "") for k, v in config.items()
    )


def run_cli(main, user_errors=(ConfigError,), debug=lambda: False, resume_hint="rerun the same command to resume"):
    """Run a script's main() for the command line: a user error is one line on stderr and exit status 2 (the
    traceback only when debug() says so), Ctrl-C exits 130 with how to resume."""
    try:
        return main()
    except user_errors as exc:
        if debug():
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint}", file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------- a script's settings, from the script
# Other code that needs a script's settings (the proxy study trains and scores with train_isic.py's and search.py's)
# asks the script in a process of its own: the constants block stays the one place a default is written, and no
# script is imported. The script answers right after its checks, before it writes or reads anything.

PRINT_CONFIG_ENV = "CSNAS_PRINT_CONFIG"  # set to "1" by script_config in the process it starts; never by users


def answer_config_request(cfg):
    """In a process started by script_config: print the resolved, checked settings as one JSON line and exit 0. In
    any other process: nothing."""
    if os.environ.get(PRINT_CONFIG_ENV) == "1":
        print(json.dumps(cfg))
        sys.exit(0)


@functools.lru_cache(maxsize=32)
def _script_config_line(script, argv):
    proc = subprocess.run([sys.executable, script, *argv], cwd=Path(script).parent, capture_output=True, text=True,
                          env={**os.environ, PRINT_CONFIG_ENV: "1"})
    lines = proc.stderr.strip().splitlines()
    if proc.returncode == 2 and lines and lines[-1].startswith("error: "):
        raise ConfigError(lines[-1][len("error: "):])  # the script's own one-line refusal
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{script} did not report its settings (exit status {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def script_config(script, argv=()):
    """The settings `script` resolves from argv (its constants < preset < argv, checked by the script itself), as a
    dict; JSON lists come back as tuples. ConfigError with the script's own message when it refuses argv. Each
    (script, argv) is asked once per process (a start costs seconds: the script imports torch)."""
    cfg = json.loads(_script_config_line(str(script), tuple(argv)))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def check_script_args(cfg, name, owner, refused=()):
    """cfg[name] must be a tuple of '--NAME=value' strings for another script, none of them a setting in `refused`
    (those the caller, `owner`, sets itself): else one ConfigError naming the setting."""
    args = cfg[name]
    if not isinstance(args, (tuple, list)) or not all(isinstance(a, str) and a.startswith("--") and "=" in a
                                                      for a in args):
        raise ConfigError(f"--{name}={args!r}: needs a tuple of '--NAME=value' strings, e.g. ('--EPOCHS=3',)")
    clash = [a for a in args if a[2:].split("=", 1)[0] in refused]
    if clash:
        raise ConfigError(f"--{name}: {', '.join(clash)} is set by the {owner} itself (use its own constant)")


def as_argv(settings):
    """{NAME: value} -> ['--NAME=value', ...], read back by parse_overrides to the same values."""
    return [f"--{k}={v!r}" for k, v in settings.items()]
