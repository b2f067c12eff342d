"""Events: the activity model, its validation, and its JSON form."""

from userstream.events.model import Action, Activity, ActivityInput, Kind, Tx, kind_of
from userstream.events.validation import ID_PATTERN, Limits, is_valid_id, validate_activity
from userstream.events.wire import EventView, encode_body

__all__ = [
    "ID_PATTERN",
    "Action",
    "Activity",
    "ActivityInput",
    "EventView",
    "Kind",
    "Limits",
    "Tx",
    "encode_body",
    "is_valid_id",
    "kind_of",
    "validate_activity",
]
