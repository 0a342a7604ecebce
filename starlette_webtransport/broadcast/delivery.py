"""How a published message reaches one member, and what happens when it cannot keep up.

Each member has one bounded queue and one writer task per delivery kind, so publishing
is an append (it never waits on a member) and a member whose peer stops reading only
ever fills its own queue. What happens when that queue is full is the kind's
:class:`SlowConsumer` policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SLOW_CONSUMER_CODE = 0x534C4F57
"""Session close code (ASCII ``SLOW``) for a member closed by the ``CLOSE`` policy."""
SLOW_CONSUMER_REASON = "slow consumer: broadcast queue full"


class Delivery(enum.Enum):
    """The kinds of delivery; each has its own queue per member."""

    DATAGRAM = "datagram"
    """One datagram per message: unreliable, unordered, no flow control."""
    STREAM = "stream"
    """Appended to one unidirectional stream per member, opened on first use, in
    order. Bytes are written as given, so messages carry their own framing (structured
    messages do)."""
    UNI_STREAM = "uni_stream"
    """A new unidirectional stream per message, finished after it: the stream's end
    delimits the message."""


class SlowConsumer(enum.Enum):
    """What a full member queue does with the next message."""

    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued message (fresh state supersedes old state)."""
    DROP_NEWEST = "drop_newest"
    """Discard the new message (what was queued is delivered as it was)."""
    CLOSE = "close"
    """Close the member's session with :data:`SLOW_CONSUMER_CODE`: for streams of
    messages that must all arrive, a member that cannot keep up is better told than
    silently given a stream with holes."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """The bound of a member's queue for one delivery kind and what a full one does."""

    queue_size: int
    on_full: SlowConsumer

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size}")


DEFAULT_POLICIES: dict[Delivery, DeliveryPolicy] = {
    Delivery.DATAGRAM: DeliveryPolicy(256, SlowConsumer.DROP_OLDEST),
    Delivery.STREAM: DeliveryPolicy(1024, SlowConsumer.CLOSE),
    Delivery.UNI_STREAM: DeliveryPolicy(256, SlowConsumer.CLOSE),
}
"""Datagrams are lossy by nature, so a slow member loses the oldest; stream messages
are expected to arrive, so a member that falls 1,024 (or 256 new streams) behind is
closed rather than left behind in silence."""

STREAM_WRITE_BATCH = 64 * 1024
"""The per-member stream writer joins queued messages into writes of about this size,
so a member that is behind catches up in few writes instead of one per message."""
