"""``parse_config``: flags generated from dataclasses (HfArgumentParser's rules), YAML defaults that flags override,
rarely used options behind ``--help-all``, switches, compatibility flags, one-line usage errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from hfvision.utils.config_parser import ConfigError, load_yaml_options, parse_config


@dataclass
class Options:
    size: int = field(default=512, metadata={"help": "output side in pixels"})
    mode: Literal["fast", "exact"] = field(default="fast", metadata={"help": "how to work"})
    name: str | None = field(default=None, metadata={"aliases": ["--name"], "help": "a name"})
    flip: bool = field(default=False, metadata={"help": "mirror the output"})
    budget: int = field(default=100, metadata={"help": "rarely changed"})

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"size={self.size} must be >= 8")


def test_flags_win_over_yaml_and_yaml_over_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("size: 256\nmode: exact\nflip: true\n")
    options = parse_config(Options, ["--config", str(path), "--size", "64", "--name", "x"])
    assert options == Options(size=64, mode="exact", name="x", flip=True, budget=100)
    assert parse_config(Options, ["--flip"]).flip is True and parse_config(Options, []) == Options()
    with pytest.raises(ValueError, match="size=4 must be >= 8"):
        parse_config(Options, ["--size", "4"])


def test_yaml_errors_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("sise: 3\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown option 'sise'; did you mean 'size'\?"):
        parse_config(Options, ["--config", str(path)])
    path.write_text("size: [1\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_yaml_options(path, Options)
    path.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml_options(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml_options(tmp_path / "nope.yaml")


def test_help_shows_defaults_once_hides_rare_options_and_lists_no_flag_twice(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Options, ["--help"], "prog", visible=["size", "mode", "name", "flip"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "output side in pixels (default: 512)" in text and text.count("(default: 512)") == 1
    assert "--budget" not in text and "--name NAME, --name NAME" not in text and "--help-all" in text
    with pytest.raises(SystemExit):
        parse_config(Options, ["--help-all"], "prog", visible=["size"])
    assert "rarely changed (default: 100)" in capsys.readouterr().out


def test_usage_errors_are_one_line_with_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Options, ["--mode", "slow"], "prog")
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("prog: error: argument --mode: invalid choice") and line.endswith("(see `prog --help`)")


@dataclass
class Policy:
    bad_images: Literal["skip", "error"] = field(default="skip", metadata={"help": "unreadable images"})
    rate: float = field(default=1.0, metadata={"help": "a rate"})
    keep: bool = field(default=True, metadata={"help": "keep the originals"})


@dataclass
class OtherToolFlags:
    old_rate: float | None = field(default=None, metadata={"help": "the other tool's name for --rate"})


def _fold(flags: OtherToolFlags, values: dict) -> dict:
    if flags.old_rate is not None:
        values["rate"] = flags.old_rate
    return values


def test_switch_compat_flags_and_script_defaults(tmp_path, capsys):
    from hfvision.utils.config_parser import STRICT_IMAGES, CompatFlags

    hooks = {"switches": (STRICT_IMAGES,), "compat": CompatFlags(OtherToolFlags, _fold)}
    assert parse_config(Policy, [], **hooks) == Policy()
    assert parse_config(Policy, ["--strict"], **hooks).bad_images == "error"
    assert parse_config(Policy, ["--bad_images", "error"], **hooks).bad_images == "error"  # the alias stays
    assert parse_config(Policy, ["--old_rate", "0.5"], **hooks).rate == 0.5
    assert parse_config(Policy, ["--no-keep"], **hooks).keep is False
    # precedence: flags > YAML > a script's defaults > the dataclass defaults
    path = tmp_path / "run.yaml"
    path.write_text("rate: 3.0\n")
    assert parse_config(Policy, [], defaults={"rate": 2.0, "keep": False}, **hooks) == Policy(rate=2.0, keep=False)
    assert parse_config(Policy, ["--config", str(path)], defaults={"rate": 2.0}, **hooks).rate == 3.0
    assert parse_config(Policy, ["--config", str(path), "--rate", "4"], defaults={"rate": 2.0}, **hooks).rate == 4.0
    # --help lists the switch, not the compatibility flags; --help-all lists them
    with pytest.raises(SystemExit):
        parse_config(Policy, ["--help"], "prog", visible=["rate"], **hooks)
    text = capsys.readouterr().out
    assert "--strict" in text and "--old_rate" not in text and "--bad_images" not in text
    with pytest.raises(SystemExit):
        parse_config(Policy, ["--help-all"], "prog", visible=["rate"], **hooks)
    text = capsys.readouterr().out
    assert "--old_rate, --old-rate OLD_RATE" in text and "--bad_images, --bad-images {skip,error}" in text


def test_several_classes_and_extra_arguments():
    def extra(parser):
        parser.add_argument("src")

    argv = ["in", "--size", "64", "--rate", "2"]
    (options, policy), namespace = parse_config((Options, Policy), argv, "p", extra_arguments=extra)
    assert (options.size, policy.rate, namespace.src) == (64, 2.0, "in")


def test_flag_words_and_percent_in_help(capsys):
    from hfvision.utils.config_parser import in_flag_words

    assert in_flag_words("size=4 must be >= 8", Options) == "--size 4 must be >= 8"
    assert in_flag_words("nothing=1 here", Options) == "nothing=1 here"

    @dataclass
    class Percent:
        share: float = field(default=0.5, metadata={"help": "share of images (50% by default)"})

    with pytest.raises(SystemExit):
        parse_config(Percent, ["--help"], "prog")
    assert "share of images (50% by default)" in capsys.readouterr().out


def test_parsing_imports_no_transformers(run_python):
    code = (
        "import sys\n"
        "from hfvision.cli import serve\n"
        "from hfvision.training.dreambooth.args import parse_dreambooth_args\n"
        "serve.parse(['--port', '0'])\n"
        "parse_dreambooth_args(['--pretrained_model_name_or_path', 'm', '--instance_data_dir', 'd', '--strict'])\n"
        "print(sorted(m for m in ('transformers', 'torch', 'diffusers') if m in sys.modules))\n"
    )
    assert run_python(code).strip() == "[]"
