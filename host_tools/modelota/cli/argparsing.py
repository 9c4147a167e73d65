"""The argparse classes of ``modelota``: imported when a command's parser is
built (``modelota --help`` alone does without argparse, cli/app.py)."""

from __future__ import annotations

import argparse
from typing import NoReturn


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, except where there is none
    to show (None, False, an empty value) or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if not text or "%(default)" in text or "(default" in text:
            return text
        if action.default in (None, False, [], "", argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse's parser with a usage error in one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
