"""The configurator: typed --NAME=value overrides, refusals that say what to fix, presets in the right order."""
import pytest

from common.config import ConfigError, config_names, configure, format_config, parse_overrides

DEFAULTS = dict(EPOCHS=10, LR=1e-3, DEBUG=False, ALGO="tpe", MEAN=(0.5, 0.5, 0.5), DATA_DIR=None, MAX_IMAGES=None)


def test_typed_values():
    got = parse_overrides(
        ["--EPOCHS=3", "--LR=1", "--DEBUG=True", "--ALGO=random", "--MEAN=(0.1, 0.2, 0.3)",
         "--DATA_DIR=/data/ISIC 2019/train", "--MAX_IMAGES=500"], DEFAULTS)
    assert got == dict(EPOCHS=3, LR=1.0, DEBUG=True, ALGO="random", MEAN=(0.1, 0.2, 0.3),
                       DATA_DIR="/data/ISIC 2019/train", MAX_IMAGES=500)
    assert type(got["LR"]) is float and type(got["EPOCHS"]) is int and type(got["MEAN"]) is tuple


def test_more_value_forms():
    assert parse_overrides(["--LR=2e-4"], DEFAULTS) == {"LR": 2e-4}
    assert parse_overrides(["--ALGO='random'"], DEFAULTS) == {"ALGO": "random"}  # quotes are optional
    assert parse_overrides(["--ALGO=a=b"], DEFAULTS) == {"ALGO": "a=b"}  # only the first '=' splits
    assert parse_overrides(["--MEAN=[0.1,0.2,0.3]"], DEFAULTS) == {"MEAN": (0.1, 0.2, 0.3)}
    assert parse_overrides(["--DATA_DIR=None"], DEFAULTS) == {"DATA_DIR": None}
    assert parse_overrides(["--DEBUG=False"], DEFAULTS) == {"DEBUG": False}
    assert parse_overrides([], DEFAULTS) == {}


@pytest.mark.parametrize("arg,words", [
    ("--EPOCHS=abc", ["EPOCHS", "int"]),
    ("--EPOCHS=1.5", ["EPOCHS", "int"]),
    ("--EPOCHS=True", ["EPOCHS", "int"]),
    ("--EPOCHS=None", ["EPOCHS", "int"]),
    ("--LR=fast", ["LR", "float"]),
    ("--LR=True", ["LR", "float"]),
    ("--DEBUG=yes", ["DEBUG"]),
    ("--DEBUG=1", ["DEBUG", "True or False"]),
    ("--MEAN=0.5", ["MEAN", "tuple"]),
])
def test_mistyped_values_are_refused(arg, words):
    with pytest.raises(ConfigError) as err:
        parse_overrides([arg], DEFAULTS)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("arg,suggestion", [("--epochs=3", "EPOCHS"), ("--EPOCH=3", "EPOCHS"), ("--FOO=1", None)])
def test_unknown_names_are_refused_with_a_suggestion(arg, suggestion):
    with pytest.raises(ConfigError) as err:
        parse_overrides([arg], DEFAULTS)
    msg = str(err.value)
    assert arg.split("=")[0] in msg and "known:" in msg and "EPOCHS" in msg
    if suggestion:
        assert f"did you mean {suggestion}?" in msg
    else:
        assert "did you mean" not in msg


@pytest.mark.parametrize("arg", ["EPOCHS=3", "-EPOCHS=3", "--EPOCHS", "--EPOCHS 3", "3"])
def test_arguments_not_in_name_value_form_are_refused(arg):
    with pytest.raises(ConfigError, match="--NAME=value"):
        parse_overrides([arg], DEFAULTS)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def _namespace(**extra):
    ns = dict(DATA_DIR=None, EPOCHS=10, N_TRIALS=120, BATCH_SIZE=256, PRESET="auto", _PRIVATE=1, lower=2,
              PRESETS={"x": 1}, helper=len)
    ns.update(extra)
    return ns


PRESETS = {"paper": {}, "demo": dict(EPOCHS=2, N_TRIALS=10)}


def test_config_names_are_the_plain_upper_case_constants():
    assert config_names(_namespace()) == ["DATA_DIR", "EPOCHS", "N_TRIALS", "BATCH_SIZE", "PRESET"]


def test_auto_preset_is_demo_without_data_and_overrides_win():
    ns = _namespace()
    cfg, changed = configure(ns, ["--N_TRIALS=3"], PRESETS)
    assert cfg["PRESET"] == "demo"
    assert cfg["EPOCHS"] == 2 and cfg["N_TRIALS"] == 3 and cfg["BATCH_SIZE"] == 256  # override > preset > block
    assert changed == ["EPOCHS"]
    assert ns["EPOCHS"] == 10 and ns["N_TRIALS"] == 120  # the script's constants are left as they are
    assert "(preset)" in format_config(cfg, changed).splitlines()[1]  # the EPOCHS line


def test_auto_preset_is_paper_with_data():
    cfg, changed = configure(_namespace(), ["--DATA_DIR=/data/isic"], PRESETS)
    assert cfg["PRESET"] == "paper" and cfg["EPOCHS"] == 10 and cfg["N_TRIALS"] == 120 and changed == []
    assert cfg["DATA_DIR"] == "/data/isic"


def test_named_preset_and_unknown_preset():
    cfg, _ = configure(_namespace(DATA_DIR="/data"), ["--PRESET=demo"], PRESETS)
    assert cfg["EPOCHS"] == 2  # a preset named on the command line applies even with data
    with pytest.raises(ConfigError, match="tiny"):
        configure(_namespace(), ["--PRESET=tiny"], PRESETS)


def test_configure_refuses_bad_arguments_before_changing_anything():
    ns = _namespace()
    with pytest.raises(ConfigError):
        configure(ns, ["--EPOCHS=3", "--EPOCHS=abc"], PRESETS)
    assert ns["EPOCHS"] == 10 and ns["PRESET"] == "auto"


def test_configure_without_presets():
    cfg, changed = configure(dict(EPOCHS=1, SEED=0), ["--SEED=5"])
    assert cfg == {"EPOCHS": 1, "SEED": 5} and changed == []
