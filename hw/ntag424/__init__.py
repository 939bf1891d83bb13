"""NXP NTAG 424 DNA, host side: secure messaging, file settings, NDEF layout and the commands.

`crypto` holds the raw primitives; most code needs only `Ntag424`, a `Transport` and the errors.
"""

from hw.ntag424.auth import Challenge, FirstAuthResult
from hw.ntag424.constants import CommMode, StatusWord
from hw.ntag424.errors import (
    AuthenticationDelay,
    AuthenticationError,
    AuthenticationProofError,
    BoundaryError,
    CardRemovedError,
    CardStatusError,
    CommandAborted,
    FileNotFound,
    IntegrityError,
    LengthError,
    NonVolatileMemoryError,
    NoSuchKey,
    NotAuthenticatedError,
    Ntag424Error,
    ParameterError,
    PermissionDenied,
    ProtocolError,
    ResponseMacError,
    SecurityStatusNotSatisfied,
    TransportError,
)
from hw.ntag424.filesettings import (
    AccessRights,
    FileSettings,
    FileSettingsUpdate,
    SdmAccessRights,
    SdmConfig,
    boltcard_file_settings,
    factory_ndef_file_settings,
)
from hw.ntag424.ndef import (
    EMPTY_NDEF_FILE,
    NdefFormatError,
    SunNdefLayout,
    parse_uri_message,
    sun_ndef_file,
    sun_url_template,
    uri_record,
)
from hw.ntag424.session import SecureSession
from hw.ntag424.tag import CardVersion, Ntag424
from hw.ntag424.transport import Transport

__all__ = [
    "EMPTY_NDEF_FILE",
    "AccessRights",
    "AuthenticationDelay",
    "AuthenticationError",
    "AuthenticationProofError",
    "BoundaryError",
    "CardRemovedError",
    "CardStatusError",
    "CardVersion",
    "Challenge",
    "CommMode",
    "CommandAborted",
    "FileNotFound",
    "FileSettings",
    "FileSettingsUpdate",
    "FirstAuthResult",
    "IntegrityError",
    "LengthError",
    "NdefFormatError",
    "NoSuchKey",
    "NonVolatileMemoryError",
    "NotAuthenticatedError",
    "Ntag424",
    "Ntag424Error",
    "ParameterError",
    "PermissionDenied",
    "ProtocolError",
    "ResponseMacError",
    "SdmAccessRights",
    "SdmConfig",
    "SecureSession",
    "SecurityStatusNotSatisfied",
    "StatusWord",
    "SunNdefLayout",
    "Transport",
    "TransportError",
    "boltcard_file_settings",
    "factory_ndef_file_settings",
    "parse_uri_message",
    "sun_ndef_file",
    "sun_url_template",
    "uri_record",
]
