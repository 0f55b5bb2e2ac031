"""A subcommand builds only its own parser: ``hfvision train ...`` does not import the other commands' modules (the
serving stack behind ``serve``'s flags among them); a command living in another command's module still works."""

from __future__ import annotations

import json


def test_train_command_imports_no_other_command(run_python):
    printed = run_python(
        """
        import json, sys
        from hfvision.cli.main import build_parser

        parser = build_parser("train")
        args, extra = parser.parse_known_args(["train", "dreambooth", "--max_train_steps", "3"])
        loaded = sorted(m for m in sys.modules if m.startswith(("hfvision.cli.", "hfvision.serving")))
        print(json.dumps({"command": args.command, "extra": extra, "loaded": loaded}))
        """
    )
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["command"] == "train" and result["extra"] == ["--max_train_steps", "3"]
    assert "hfvision.cli.train" in result["loaded"]
    assert not [m for m in result["loaded"] if m.startswith("hfvision.serving")]
    assert "hfvision.cli.serve" not in result["loaded"] and "hfvision.cli.generate" not in result["loaded"]


def test_command_registered_by_another_module_still_runs(capsys):
    from hfvision.cli.main import main

    assert main(["models", "list"]) == 0  # `models` is registered by cli/generate.py
    assert "sd15" in capsys.readouterr().out
