"""The persistent (non-volatile) memory of a simulated NTAG 424 DNA and its JSON file.

Everything a real card keeps across power cycles lives in `CardState`: UID, the five AES keys
with their versions and failed-authentication counters, the three StandardData files with their
settings and SDM read counter, the configuration set with SetConfiguration and the pending
authentication delay. Sessions, selections and read sequences are volatile and live in the card.

The file holds keys, so it is written 0600, atomically (temp file, fsync, os.replace).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.sim.constants import FACTORY_CC, KEY_COUNT, KEY_SIZE, CommMode
from hw.sim.errors import CardStateError, CardStatus
from hw.sim.file_settings import AccessRights, FileSettings

STATE_FORMAT = "flash-terminal/simulated-ntag424"
STATE_VERSION = 1
UID_SIZE = 7
SIGNATURE_SIZE = 56

# Factory defaults of the failed authentication counter (SetConfiguration option 0Ah).
TOT_FAIL_CTR_LIMIT = 1000
TOT_FAIL_CTR_DECR = 10


@dataclass
class AppKey:
    """One application key: AES-128 value, key version, TotFailCtr."""

    value: bytes = field(default=bytes(KEY_SIZE), repr=False)
    version: int = 0
    tot_fail_ctr: int = 0


@dataclass
class StandardDataFile:
    """A StandardData file: number, ISO file id, fixed size, settings, static content."""

    file_no: int
    iso_fid: bytes
    settings: FileSettings
    content: bytearray
    sdm_read_ctr: int = 0

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass
class CardState:
    """Non-volatile memory of the card."""

    uid: bytes = field(repr=False)  # the real 7-byte UID: personal data, kept out of reprs
    keys: list[AppKey]
    files: dict[int, StandardDataFile]
    random_uid: bool = False
    consecutive_auth_failures: int = 0
    auth_delay_frames: int = 0  # AUTHENTICATION_DELAY answers still owed (§9)
    failed_ctr_enabled: bool = True
    tot_fail_ctr_limit: int = TOT_FAIL_CTR_LIMIT
    tot_fail_ctr_decr: int = TOT_FAIL_CTR_DECR
    pdcap2: bytes = bytes(6)
    sm_config: bytes = bytes(2)
    hw_option: int = 0x01
    production: bytes = field(default=bytes(7), repr=False)  # BatchNo ‖ FabKey/CW ‖ YearProd
    signature: bytes = field(default=bytes(SIGNATURE_SIZE), repr=False)

    def file_by_fid(self, fid: bytes) -> StandardDataFile | None:
        return next((f for f in self.files.values() if f.iso_fid == fid), None)


def factory_files() -> dict[int, StandardDataFile]:
    """The three files as shipped (§8.2.3): CC, NDEF (free read/write) and proprietary (Full)."""
    cc = FileSettings(CommMode.PLAIN, AccessRights(read=0xE, write=0x0, read_write=0x0, change=0))
    ndef = FileSettings(CommMode.PLAIN, AccessRights(read=0xE, write=0xE, read_write=0xE, change=0))
    prop = FileSettings(CommMode.FULL, AccessRights(read=0x2, write=0x3, read_write=0x3, change=0))
    return {
        1: StandardDataFile(1, bytes.fromhex("E103"), cc, bytearray(FACTORY_CC)),
        2: StandardDataFile(2, bytes.fromhex("E104"), ndef, bytearray(256)),
        3: StandardDataFile(3, bytes.fromhex("E105"), prop, bytearray(128)),
    }


def factory_state(uid: bytes | None = None) -> CardState:
    """A blank card: all-zero keys at version 00, factory files, random UID off."""
    if uid is None:
        uid = b"\x04" + secrets.token_bytes(UID_SIZE - 1)  # 04h: NXP's manufacturer code
    if len(uid) != UID_SIZE:
        raise ValueError(f"an NTAG 424 DNA UID has {UID_SIZE} bytes, got {len(uid)}")
    # BatchNo (4) ‖ BatchNo/FabKey 0 ‖ FabKey 0/CWProd ‖ YearProd (BCD), as GetVersion part 3.
    production = secrets.token_bytes(4) + bytes([secrets.randbelow(16) << 4, 0x12, 0x24])
    return CardState(
        uid=bytes(uid),
        keys=[AppKey() for _ in range(KEY_COUNT)],
        files=factory_files(),
        production=production,
        # Not NXP-signed: a real terminal's originality check must reject a simulated card.
        signature=secrets.token_bytes(SIGNATURE_SIZE),
    )


# -- JSON ------------------------------------------------------------------------------------


def state_to_json(state: CardState) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "uid": state.uid.hex().upper(),
        "random_uid": state.random_uid,
        "keys": [
            {"key": k.value.hex().upper(), "version": k.version, "tot_fail_ctr": k.tot_fail_ctr}
            for k in state.keys
        ],
        "files": [
            {
                "file_no": f.file_no,
                "iso_fid": f.iso_fid.hex().upper(),
                "settings": f.settings.encode().hex().upper(),  # ChangeFileSettings data
                "sdm_read_ctr": f.sdm_read_ctr,
                "content": bytes(f.content).hex().upper(),
            }
            for f in state.files.values()
        ],
        "auth": {
            "consecutive_failures": state.consecutive_auth_failures,
            "delay_frames": state.auth_delay_frames,
            "failed_ctr_enabled": state.failed_ctr_enabled,
            "tot_fail_ctr_limit": state.tot_fail_ctr_limit,
            "tot_fail_ctr_decr": state.tot_fail_ctr_decr,
        },
        "pdcap2": state.pdcap2.hex().upper(),
        "sm_config": state.sm_config.hex().upper(),
        "hw_option": state.hw_option,
        "production": state.production.hex().upper(),
        "signature": state.signature.hex().upper(),
    }


def _hex(raw: Any, size: int | None, what: str) -> bytes:
    value = bytes.fromhex(raw)
    if size is not None and len(value) != size:
        raise ValueError(f"{what} must be {size} bytes")
    return value


def state_from_json(doc: Any) -> CardState:
    """Rebuild a state; raise CardStateError naming what is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise CardStateError("not a simulated NTAG 424 DNA state file")
    if doc.get("version") != STATE_VERSION:
        raise CardStateError(f"unsupported state file version {doc.get('version')!r}")
    try:
        keys = [
            AppKey(_hex(k["key"], KEY_SIZE, "key"), int(k["version"]), int(k["tot_fail_ctr"]))
            for k in doc["keys"]
        ]
        if len(keys) != KEY_COUNT:
            raise ValueError(f"expected {KEY_COUNT} keys")
        files: dict[int, StandardDataFile] = {}
        for f in doc["files"]:
            content = bytearray(_hex(f["content"], None, "content"))
            settings = FileSettings.decode(_hex(f["settings"], None, "settings"))
            settings.validate(len(content), current_read_ctr=None)
            file = StandardDataFile(
                int(f["file_no"]),
                _hex(f["iso_fid"], 2, "iso_fid"),
                settings,
                content,
                int(f["sdm_read_ctr"]),
            )
            files[file.file_no] = file
        auth = doc["auth"]
        return CardState(
            uid=_hex(doc["uid"], UID_SIZE, "uid"),
            keys=keys,
            files=files,
            random_uid=bool(doc["random_uid"]),
            consecutive_auth_failures=int(auth["consecutive_failures"]),
            auth_delay_frames=int(auth["delay_frames"]),
            failed_ctr_enabled=bool(auth["failed_ctr_enabled"]),
            tot_fail_ctr_limit=int(auth["tot_fail_ctr_limit"]),
            tot_fail_ctr_decr=int(auth["tot_fail_ctr_decr"]),
            pdcap2=_hex(doc["pdcap2"], 6, "pdcap2"),
            sm_config=_hex(doc["sm_config"], 2, "sm_config"),
            hw_option=int(doc["hw_option"]),
            production=_hex(doc["production"], 7, "production"),
            signature=_hex(doc["signature"], SIGNATURE_SIZE, "signature"),
        )
    except CardStatus as exc:
        raise CardStateError(f"invalid file settings in state file: {exc.reason}") from None
    except (KeyError, TypeError, ValueError) as exc:
        # The message names the field, never its value: the file holds keys.
        raise CardStateError(f"damaged state file ({type(exc).__name__}: {exc})") from None


def save_state(state: CardState, path: str | os.PathLike[str]) -> None:
    """Write atomically: a crash leaves either the old file or the new one, never half of one."""
    target = Path(path)
    data = json.dumps(state_to_json(state), indent=2).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)  # mkstemp already creates 0600; say it where it matters
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_state(path: str | os.PathLike[str]) -> CardState:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CardStateError(f"cannot read card state {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardStateError(f"card state {path} is not JSON (line {exc.lineno})") from None
    return state_from_json(doc)
