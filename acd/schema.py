"""The acd component's numbered migrations (applied by the composition root)."""

from acd.callbacks import MIGRATIONS_CALLBACKS
from acd.cdr import MIGRATIONS_CDR
from acd.directory import MIGRATIONS_EXTENSIONS
from acd.features import MIGRATIONS_FEATURES
from acd.ivr_store import MIGRATIONS_IVR
from acd.queue_log import MIGRATIONS_QUEUE_LOG
from acd.recording_index import MIGRATIONS_RECORDINGS
from acd.voicemail import MIGRATIONS_VOICEMAIL

MIGRATIONS: list[str] = [
    MIGRATIONS_EXTENSIONS,  # 1
    MIGRATIONS_CDR,         # 2
    MIGRATIONS_QUEUE_LOG,   # 3
    MIGRATIONS_FEATURES,    # 4
    MIGRATIONS_IVR,         # 5
    MIGRATIONS_VOICEMAIL,   # 6
    MIGRATIONS_CALLBACKS,   # 7
    MIGRATIONS_RECORDINGS,  # 8
]
