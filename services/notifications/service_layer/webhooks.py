"""Delivering webhook notifications: durable rows in, POSTs out, retried with
exponential backoff and jitter, dead-lettered after a bounded number of attempts.

A delivery row is written in the transaction that appends its notification, so a
crash or restart loses none; the worker only moves rows along. A row acknowledged
with 2xx is DELIVERED and never sent again. (If the process dies between the 2xx and
recording it, that one attempt is repeated: receivers deduplicate on the
`Sitenet-Delivery` header, as with any at-least-once webhook.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from services.notifications.domain.model import DeliveryState, DueDelivery
from services.notifications.domain.webhooks import backoff_s
from services.notifications.service_layer.ports import NotificationsUnitOfWork, WebhookSender
from services.notifications.service_layer.signal import LogSignal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_s: float = 1.0
    cap_s: float = 600.0
    timeout_s: float = 5.0


class WebhookWorker:
    BATCH = 100

    def __init__(self, unit_of_work: Callable[[], NotificationsUnitOfWork],
                 sender: WebhookSender, signal: LogSignal, policy: RetryPolicy,
                 poll_interval_s: float = 0.5, concurrency: int = 16) -> None:
        self._uow = unit_of_work
        self._sender = sender
        self._signal = signal
        self._policy = policy
        self._poll_s = poll_interval_s
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            seen = self._signal.version
            try:
                sent = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away, say: try again at the next poll
                # One line, as the relay and the consumer log it: this repeats every poll.
                log.warning("webhook worker failed; retrying", error=repr(exc))
                sent = 0
            if sent < self.BATCH:
                await self._signal.wait(seen, self._poll_s)

    async def deliver_due(self) -> int:
        now = dt.datetime.now(dt.UTC)
        # The lease outlasts one attempt, so a second replica does not send it meanwhile.
        lease = now + dt.timedelta(seconds=self._policy.timeout_s * 2 + 5)
        async with self._uow() as uow:
            due = await uow.deliveries.claim_due(now, lease, self.BATCH)
            await uow.commit()
        await asyncio.gather(*(self._attempt(d) for d in due))
        return len(due)

    async def _attempt(self, due: DueDelivery) -> None:
        async with self._slots:
            number = due.delivery.attempts_made + 1
            attempt = await self._sender.send(due, number)
        if attempt.ok:
            state, wait = DeliveryState.DELIVERED, 0.0
        elif number >= self._policy.max_attempts:
            state, wait = DeliveryState.DEAD_LETTER, 0.0
            log.warning("webhook dead-lettered", delivery=due.delivery.name, attempts=number)
        else:
            state = DeliveryState.PENDING
            wait = backoff_s(number, self._policy.base_s, self._policy.cap_s)
        async with self._uow() as uow:
            await uow.deliveries.record(
                due.delivery.delivery_id, attempt, state,
                attempt.attempt_time + dt.timedelta(seconds=wait))
            await uow.commit()
