"""Every text the screens show, in one place so the terminal can be translated.

Keys are stable identifiers; values are `str.format` templates. `t(key, **fields)` looks one up.
A translation is a dict with the same keys installed with `use(table)`.
"""

from __future__ import annotations

EN: dict[str, str] = {
    # status bar
    "status.online": "Online",
    "status.offline": "Offline",
    "status.connecting": "Connecting",
    "status.reader.ready": "Reader ready",
    "status.reader.absent": "No reader",
    "status.reader.demo": "Demo cards",
    "status.queue.none": "Queue empty",
    "status.queue": "Queued {amount} ({count})",
    "status.queue.blocked": ", {count} of blocked cards",
    "status.printer.none": "No printer",
    "status.printer.ready": "Printer ready",
    "status.printer.error": "Printer error",
    # sale
    "sale.title": "New sale",
    "sale.charge": "Charge",
    "sale.next": "Next",
    "sale.clear": "Clear",
    "sale.memo.hint": "Memo (optional)",
    "sale.sats": "≈ {sats}",
    "sale.rate_age": "rate {age}",
    "sale.no_rate": "No rate yet: check the connection",
    "sale.enter_amount": "Enter the amount",
    "sale.max": "The most one sale can be is {max}",
    "sale.switch": "Currency: {code}",
    # notices (one line over the current screen)
    "notice.enter-amount": "Key the amount first",
    "notice.tap-before-amount": "Key the amount first, then tap the card",
    "notice.no-rate": "No rate for this currency yet: check the connection",
    "notice.below-minimum": "The smallest sale is {sats} sats",
    "notice.max-amount": "That is more than one sale can be",
    "notice.tap-held-for-tip": "Card read: choose the tip, then it is charged",
    "notice.tap-again-after-charge": "Tap the card again after Charge",
    "notice.one-card-at-a-time": "One card at a time",
    "notice.sale-ended": "This sale has ended: key the next amount, then tap",
    "notice.card-in-progress": "A card is already being charged",
    "notice.in-flight": "The payment is on its way: it cannot be cancelled now",
    "notice.tip-too-large": "That tip makes the sale too large",
    "notice.late-tap": "This sale has ended",
    "notice.currency-locked": "Go back to the amount to change the currency",
    "notice.no-invoice": "There is no invoice to pay",
    "notice.finish-first": "Finish or cancel the sale on screen first",
    # tip
    "tip.title": "Add a tip?",
    "tip.none": "No tip",
    "tip.percent": "{percent}%",
    "tip.custom": "Custom",
    "tip.line": "Tip {tip} · Total {total}",
    "tip.title_for": "Add a tip to {amount}?",
    "tip.custom.amount": "Tip {tip}",
    "tip.custom.ok": "Add tip",
    "tip.back": "Back",
    # pay
    "pay.title": "Tap card or scan",
    "pay.title.offline": "Offline: tap a card",
    "pay.title.pin": "Customer: enter the card PIN",
    "pay.tip": "incl. tip {tip}",
    "pay.creating": "Creating invoice…",
    "pay.waiting": "Waiting for payment",
    "pay.card_read": "Card read, checking…",
    "pay.confirming": "Payment sent, confirming…",
    "pay.offline": "Offline: a card can pay, no QR",
    "pay.expires": "Expires in {time}",
    "pay.expired": "Invoice expired",
    "pay.cancel": "Cancel",
    "pay.pin.title": "Card PIN for {amount}",
    "pay.pin.ok": "OK",
    "pay.pin.hint": "Customer: enter your card PIN",
    # result
    "result.paid": "Paid",
    "result.queued": "Accepted offline",
    "result.failed": "Payment failed",
    "result.refused": "Card refused",
    "result.declined": "Declined",
    "result.expired": "Invoice expired",
    "result.cancelled": "Sale cancelled",
    "result.unconfirmed": "Not confirmed yet",
    "result.method.card": "Card",
    "result.method.qr": "QR wallet",
    "result.print": "Print receipt",
    "result.reprint": "Reprint",
    "result.new_sale": "New sale",
    "result.try_again": "Try again",
    "result.cancel_sale": "Cancel sale",
    "result.back_in": "Back in {seconds} s",
    "result.printed": "Receipt printed",
    "result.shown": "Receipt shown on the console (no printer)",
    "result.no_printer": "No printer connected",
    "result.paper_out": "Printer out of paper",
    "result.printer_offline": "Printer offline",
    "result.printer_error": "Printer error",
    "result.tip": "Tip {tip}",
    "next.paid": "Hand over the goods.",
    "next.queued": "It will be paid when the terminal is back online.",
    "next.retry": "Ask for another card, or pay with the QR code.",
    "next.retry_offline": "Ask for another card (no QR while offline).",
    "next.declined": "Ask for another way to pay: offline limits were reached.",
    "next.wrong-pin": "Tap the card again and enter the right PIN.",
    "next.pin-required": "Tap the card again and enter its PIN.",
    "next.insufficient-balance": "Ask for another card, or pay with the QR code.",
    "next.new_sale": "Start the sale again.",
    "next.unconfirmed": "Do not charge again: check History in a minute, it settles by itself.",
    "next.check_connection": "Check the connection, then start the sale again.",
    # plain-word reasons by code
    "reason.insufficient-balance": "Not enough funds on the card.",
    "reason.limit-exceeded": "The amount is above this card's limit.",
    "reason.card-disabled": "This card is disabled by its issuer.",
    "reason.replayed-tap": "This tap was already used (copied card data).",
    "reason.wrong-pin": "Wrong PIN.",
    "reason.invalid-pin": "A PIN is 4 to 8 digits.",
    "reason.pin-required": "This amount needs the card's PIN.",
    "reason.amount-out-of-range": "The card cannot pay this amount.",
    "reason.issuer-unreachable": "The card's issuer cannot be reached.",
    "reason.issuer-error": "The card's issuer refused the payment.",
    "reason.invoice-expired": "The invoice expired before it was paid.",
    "reason.cancelled-by-merchant": "The sale was cancelled.",
    "reason.cmac-mismatch": "This card failed its security check.",
    "reason.malformed": "This card's data could not be read.",
    "reason.url-refused": "This card points to an address the terminal does not trust.",
    "reason.backend-refused": "The payment server refused to create the invoice.",
    "reason.outcome-unknown": "The payment outcome is not known yet.",
    "reason.unknown": "The payment did not go through.",
    "reason.card-blocked": "This card is blocked.",
    "reason.card-limit-per-tap": "The amount is above this card's limit per payment.",
    "reason.card-limit-per-day": "This card has reached its limit for the day.",
    "reason.card-limit-per-hour": "This card has paid too often in the last hour.",
    "reason.unknown-card-refused": "This card could not be verified here (no keys for it).",
    "reason.unknown-card-offline": "This card can be accepted only online.",
    # sale states, as history shows them
    "state.created": "open",
    "state.invoiced": "open",
    "state.card_read": "card read",
    "state.withdraw_requested": "card read",
    "state.callback_sent": "confirming",
    "state.queued": "offline, queued",
    "state.submitted": "offline, sending",
    "state.paid": "paid",
    "state.failed": "failed",
    "state.expired": "expired",
    "state.cancelled": "cancelled",
    "state.declined": "declined",
    # history
    "history.title": "Sales",
    "history.today": "Today",
    "history.empty": "No sales yet today",
    "history.empty.today": "No sales yet today",
    "history.empty.day": "No sales that day",
    "history.empty.filtered": "No sales match these filters",
    "history.pending": "{count} offline, not settled yet",
    "history.per_card": "Per card:",
    "history.filter.state": "State: {state}",
    "history.filter.method": "Method: {method}",
    "history.detail.sale": "Sale {sale}",
    "history.detail.tip": "Tip {tip}",
    "history.detail.state": "State: {state}",
    "history.detail.method": "Paid by: {method}",
    "history.detail.memo": "Memo: {memo}",
    "history.detail.payment": "Payment: {hash}",
    "history.filter.all": "All",
    "history.total": "{count} sales · {total}",
    "history.total.one": "1 sale · {total}",
    "history.export": "Export",
    "history.exported": "Exported {count} sales to {path}",
    "history.reprint": "Reprint",
    "history.back": "Back",
    # admin
    "admin.title": "Admin",
    "admin.enter_pin": "Enter the admin PIN",
    "admin.wrong_pin": "Wrong PIN: {left} attempts left",
    "admin.locked": "Locked: try again in {seconds} s",
    "admin.no_pin": "No admin PIN configured ([admin] pin_hash)",
    "admin.unlocked": "Unlocked",
    "admin.lock": "Lock",
    "admin.history": "History",
    "admin.section.backend": "Backend",
    "admin.section.offline": "Offline limits",
    "admin.section.issuers": "Card issuers",
    "admin.section.cards": "Card limits and hotlists",
    "admin.section.devices": "Reader and printer",
    "admin.section.about": "About",
    "admin.section.merchant": "Merchant",
    "admin.tab.settings": "Settings",
    "admin.tab.tests": "Tests",
    "admin.tab.cards": "Cards",
    "admin.enrolled": "Set by enrollment: flash-terminal enroll (read-only here)",
    # admin: device tests
    "tests.printer": "Test printer",
    "tests.reader": "Test reader",
    "tests.printer.idle": "Prints a short test receipt",
    "tests.printer.running": "Printing the test receipt…",
    "tests.printer.ok": "Printer OK",
    "tests.printer.offline": "Printer offline",
    "tests.printer.paper_out": "Printer out of paper",
    "tests.printer.error": "Printer error",
    "tests.printer.none": "No printer configured (printer.enabled and printer.port, set by "
    "enrollment)",
    "tests.printer.sink": "No printer: the test receipt went to the console",
    "tests.reader.state": "Reader: {text}",
    "tests.reader.tap": "Tap any card on the reader…",
    "tests.reader.link": "Card with a payment link (NTAG 424 / Type 4), host {host}",
    "tests.reader.iso": "(ISO-DEP card: usable by the card tools)",
    # admin: card tools
    "tools.info": "Info",
    "tools.program": "Program",
    "tools.wipe": "Wipe",
    "tools.cancel": "Cancel",
    "tools.confirm": "Wipe it",
    "tools.pick": "Card tools",
    "tools.help": "Info: what a card holds. Program: a blank card becomes a Boltcard of the "
    "chosen issuer. Wipe: back to factory keys. Pick a tool, then tap the card.",
    "tools.issuer": "Issuer: {name}",
    "tools.issuer.none": "no issuer key configured",
    "tools.url.hint": "Card URL lnurlw://host/path",
    "tools.key_file.hint": "or key file (JSON) path",
    "tools.keys.file": "key file {path}",
    "tools.using": "Keys: {keys}",
    "tools.hold_still": "Tap the card and hold it still until this screen says done",
    "tools.info.waiting": "Info: tap the card",
    "tools.program.waiting": "Program: tap a blank card",
    "tools.wipe.waiting": "Wipe: tap the card",
    "tools.wipe.confirm": "Wipe a card?",
    "tools.wipe.confirm_detail": "The card goes back to factory keys and stops paying. "
    "Keys: {issuer}",
    "tools.working": "Working: hold the card still…",
    "tools.info.blank": "Blank card (factory state)",
    "tools.info.blank_detail": "Keys at factory value (version 0), no URL",
    "tools.info.blank_next": "Ready to be programmed.",
    "tools.info.partial": "Card part-way programmed or wiped",
    "tools.info.partial_detail": "Program or Wipe again with the same keys to finish it",
    "tools.info.versions": "Key versions {versions}",
    "tools.info.programmed": "Programmed card (key version {version})",
    "tools.info.sun_on": "Secure tap (SUN) on",
    "tools.info.sun_off": "Secure tap (SUN) off",
    "tools.info.host": "URL host {host}",
    "tools.info.verified": "Tap verifies: issuer {issuer}, card id {card_id}",
    "tools.info.not_verified": "Tap does not verify with the configured keys ({reason})",
    "tools.info.not_verified_next": "Another issuer's card, or keys this terminal does not have.",
    "tools.info.no_keys": "No issuer keys configured to verify its tap",
    "tools.card_id": "Card id {card_id}",
    "tools.resumed": "Finished an attempt that had been interrupted",
    "tools.program.done": "Card programmed",
    "tools.program.verified": "First tap verified with the new keys",
    "tools.program.next": "Hand the card to its owner, or register it with the issuer.",
    "tools.wipe.done": "Card wiped",
    "tools.wipe.detail": "Factory keys (version 0), secure tap off, URL cleared",
    "tools.wipe.next": "The card is blank and can be programmed again.",
    "tools.info.failed": "Could not read the card",
    "tools.program.failed": "Programming failed",
    "tools.wipe.failed": "Wipe failed",
    "tools.error.no_journal": "No data directory to keep the card keys journal in",
    "tools.error.no_keys": "No keys: configure a deterministic issuer, or give a key file",
    "tools.error.no_url": "No card URL: type the issuer's lnurlw:// URL, or use a key file "
    "that carries it",
    "tools.next.enroll": "Fill in the missing item, or set it by enrollment.",
    "tools.next.not_blank": "Wipe it first with its issuer's keys, then program it.",
    "tools.next.wrong_keys": "Pick the card's issuer or key file. Nothing was sent that "
    "counts towards the card's lock-out.",
    "tools.next.read_back": "Wipe the card with the same keys (the journal holds them), then "
    "program it again.",
    "tools.next.removed": "Tap the card again with the same tool and hold it still: it "
    "finishes where it stopped.",
    "tools.next.delay": "Wait a minute before trying again; check the keys first (Info).",
    "tools.next.refused_key": "Check the card belongs to this issuer (Info) before trying again.",
    "tools.next.key_file": "Check the key file path and its content.",
    "tools.next.journal": "Check the data directory is writable; the card was not changed.",
    "tools.next.again": "Tap the card again and hold it still.",
    "tools.confirm_first": "Press \u201cWipe it\u201d first, then tap the card",
    "tools.busy": "Finish the card in progress first",
    "tools.block": "Block",
    "tools.block.waiting": "Block: tap the card",
    "tools.block.failed": "Could not block the card",
    "blocks.reason": "Reason: {reason}",
    "blocks.reason.lost": "lost",
    "blocks.reason.stolen": "stolen",
    "blocks.reason.customer": "customer's request",
    "blocks.reason.fraud": "suspected fraud",
    "blocks.reason.hint": "or type a reason",
    "blocks.with_reason": "It will be blocked as: {reason}",
    "blocks.done": "Card blocked",
    "blocks.done_next": "It is refused from now on, online and offline, on this terminal.",
    "blocks.card": "Card id {card_id} (issuer {issuer})",
    "blocks.because": "Reason: {reason}",
    "blocks.flagged": "{count} offline payment(s) of this card ({sats} sats) are still queued: "
    "they will be sent, and its issuer may refuse them",
    "blocks.failed": "Could not block the card",
    "blocks.unavailable": "Blocking needs the terminal's books (not available here)",
    "blocks.not_verified": "The tap does not verify with the configured keys ({reason})",
    "blocks.not_verified_next": "A card whose keys this terminal lacks cannot be named; its "
    "host's unknown-card policy decides for it.",
    "blocks.list": "Blocked cards",
    "blocks.none": "No card is blocked",
    "blocks.unblock": "Unblock",
    "blocks.source.terminal": "this terminal",
    "blocks.unblocked": "Card {card_id} unblocked",
    "blocks.still": "Unblocked here, but still blocked by the list {source}",
    # demo strip
    "demo.tap_a": "Tap card A",
    "demo.tap_b": "Tap card B",
    "demo.pay_qr": "Pay QR",
    "demo.blank": "Blank card",
    "demo.label": "DEMO",
}

_table: dict[str, str] = EN


def use(table: dict[str, str]) -> None:
    """Install a translation (missing keys fall back to English)."""
    global _table
    _table = {**EN, **table}


def t(key: str, **fields: object) -> str:
    template = _table.get(key) or EN.get(key) or key
    return template.format(**fields) if fields else template


def reason_text(code: str | None) -> str:
    """Plain words for a reason code; unknown codes fall back to a generic sentence."""
    if not code:
        return t("reason.unknown")
    key = f"reason.{code}"
    return t(key) if key in _table or key in EN else t("reason.unknown")


def has(key: str) -> bool:
    return key in _table or key in EN


def notice_text(notice: object) -> str:
    """A till notice in words: its fixed text when the code has one, else the service's own
    words (late taps and reader messages carry them)."""
    if notice is None:
        return ""
    code = getattr(notice, "code", "")
    text = getattr(notice, "text", "")
    params = getattr(notice, "params", {}) or {}
    key = f"notice.{code}"
    if text and code in ("late-tap", "reader", "no-rate"):
        return str(text)
    if has(key):
        try:
            return t(key, **params)
        except (KeyError, IndexError):
            return t(key)
    return str(text)
