"""``parse_config``: flags generated from a dataclass by HfArgumentParser, YAML defaults that flags override, rarely
used options behind ``--help-all``, one-line usage errors."""

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
