"""The tutorial's worker: one handler per task type, each saying what it does.

Run it with the CLI, against the cluster the client used::

    asyncq worker examples.tutorial.worker:mux \\
        --cluster-nodes 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 \\
        --concurrency 20 -q notifications=1 -q webhooks=1 -q images=1
"""

from __future__ import annotations

import asyncq

mux = asyncq.ServeMux()


@mux.handler("notifications:email")
async def send_email(task: asyncq.Task) -> None:
    """Pretend to send an email."""
    payload = task.json()
    print(
        f"notifications:email: sending email to user {payload['to']} from {payload['from']}",
        flush=True,
    )


@mux.handler("webhooks:sync")
async def sync_webhook(task: asyncq.Task) -> None:
    """Pretend to call a webhook."""
    print(f"webhooks:sync: syncing data {task.json()['data']}", flush=True)


@mux.handler("images:resize")
async def resize_image(task: asyncq.Task) -> None:
    """Pretend to resize an image."""
    print(f"images:resize: resizing image {task.json()['src']}", flush=True)
