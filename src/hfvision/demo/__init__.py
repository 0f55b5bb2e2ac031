"""``hfvision demo``: every capability end to end on tiny offline models, with an HTML report.

Steps are modules in :mod:`hfvision.demo.steps` that define ``ORDER`` (int), ``TITLE`` (str) and
``run(ctx: DemoContext) -> None``; they add text, tables and images to ``ctx.section``.
"""

from .runner import DemoContext, Section, run_demo

__all__ = ["DemoContext", "Section", "run_demo"]
