"""The ``custom_pipelines`` keys under which hfvision's pipelines are saved in a model's ``config.json``.

Here, below both :mod:`hfvision.pipelines.registry` (which saves and resolves them) and :mod:`hfvision.hub` (which
reads them to set up an endpoint), so that the Hub helpers need not import the pipelines.
"""

#: prefix of the ``custom_pipelines`` key a saved hfvision pipeline declares its code under
SAVED_TASK_PREFIX = "hfvision-"


def saved_task(key: str) -> str:
    """The task name in a saved ``custom_pipelines`` key (older versions saved the bare task name).

    >>> saved_task("hfvision-gender-classification"), saved_task("gender-classification")
    ('gender-classification', 'gender-classification')
    """
    return key.removeprefix(SAVED_TASK_PREFIX)
