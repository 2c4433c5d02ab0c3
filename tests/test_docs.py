"""The examples in docs/ run: each ```python block of a page is executed against real Redis."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from asyncq import Inspector, RedisConnector
from asyncq.testing.plugin import ClusterTarget, StandaloneTarget

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

# Pages whose blocks form a complete program (they call asyncio.run themselves).
RUNNABLE_PAGES = [
    "quickstart.md",
    "handlers.md",
    "inspector.md",
    "periodic.md",
    "groups.md",
    "results.md",
    "unique.md",
]


def python_blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text())


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_examples_run(
    page: str, redis_server: StandaloneTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python example"
    for _ in range(2):  # a reader runs an example again: it must leave nothing in its way
        for block in blocks:
            exec(compile(block, f"docs/{page}", "exec"), {"__name__": "__docs__"})
        # ...but for what a reader would see and keep: the quickstart's queue, whose unique
        # lock refuses the next run's first enqueue for an hour, as it says.
        asyncio.run(_delete_queues(redis_server.url, LEFT_FOR_THE_READER.get(page, [])))


# Queues a page's example leaves for the reader to look at (and a worker to run).
LEFT_FOR_THE_READER = {"quickstart.md": ["quickstart"]}


async def _delete_queues(url: str, queues: list[str]) -> None:
    async with Inspector(RedisConnector(url)) as inspector:
        for queue in queues:
            await inspector.delete_queue(queue, force=True)


def test_the_readme_example_runs_on_a_cluster(
    redis_cluster: ClusterTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first example, with the test cluster's nodes for the tutorial's."""
    readme = (DOCS.parent / "README.md").read_text()
    block = BLOCK.findall(readme)[0]
    tutorial_nodes = '["127.0.0.1:7000", "127.0.0.1:7001"]'
    assert tutorial_nodes in block
    block = block.replace(tutorial_nodes, repr(redis_cluster.seeds))
    exec(compile(block, "README.md", "exec"), {"__name__": "__docs__"})
    task_id, state = capsys.readouterr().out.split()
    assert len(task_id) == 36
    assert state == "scheduled"  # process_in=1 minute


def test_testing_page_example_is_a_working_test(tmp_path: Path) -> None:
    """The testing page's example is a real test: run it in a nested pytest session."""
    (block,) = python_blocks("testing.md")
    test_file = tmp_path / "test_from_docs.py"
    test_file.write_text(block)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytest.main(
        ["-q", "-p", "no:cacheprovider", str(test_file), "--rootdir", str(tmp_path)]
    )
    assert result == pytest.ExitCode.OK


STRICT_MODE_TEST = """
import pytest

import asyncq


@pytest.mark.asyncio
async def test_the_connector_fixture_works_in_strict_mode(
    standalone_connector: asyncq.Connector,
) -> None:
    assert await standalone_connector.execute("PING") is True
"""


def test_the_plugins_async_fixtures_work_in_pytest_asyncios_strict_mode(
    tmp_path: Path, redis_server: StandaloneTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In strict mode a test got the fixture's async generator instead of a connector,
    and a parametrised one failed inside pytest with a bare AssertionError."""
    monkeypatch.setenv("ASYNCQ_TEST_REDIS_URL", redis_server.url)
    (tmp_path / "test_strict.py").write_text(STRICT_MODE_TEST)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytest.main(
        ["-q", "-p", "no:cacheprovider", str(tmp_path / "test_strict.py"), "--rootdir",
         str(tmp_path)]
    )  # fmt: skip
    assert result == pytest.ExitCode.OK


def test_cli_page_shows_the_current_help() -> None:
    """docs/cli.md shows the CLI's own --help; regenerate it with scripts/cli_docs.py."""
    import importlib.util

    path = DOCS.parent / "scripts" / "cli_docs.py"
    spec = importlib.util.spec_from_file_location("cli_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = (DOCS / "cli.md").read_text()
    assert "<!-- help: asyncq worker -->" in page
    assert module.render(page) == page, "docs/cli.md is stale: run python scripts/cli_docs.py"
