"""The Admin screen: the PIN pad (with lock-out) and, once unlocked, three tabs: the settings
overview (read-only: enrollment sets it), device tests and the card tools. Every decision is in
the view models (`AdminLock`, `admin_sections`, `DeviceTestsViewModel`, `CardToolsViewModel`);
this only copies their state into widgets and forwards presses."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.admin import admin_sections
from terminal.app.ui.viewmodels.card_tools import Tool, ToolPhase
from terminal.app.ui.viewmodels.controller import Screen
from terminal.app.ui.viewmodels.tones import COLOURS

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

TABS = ("settings", "tests", "cards", "cashiers")


class AdminScreen(BaseScreen):
    config = None  # terminal.app.config.Config, for the settings overview
    hint = ""  # demo mode tells the visitor the PIN
    tab = "settings"

    def attach(self, controller) -> None:
        for vm in (controller.admin, controller.tools, controller.tests, controller.status,
                   controller.cashiers, controller.blocks):
            vm.subscribe(self.refresh)
        super().attach(controller)

    # -- presses --------------------------------------------------------------------------
    def key(self, key: str) -> None:
        self.controller.admin.press(key)

    def submit(self) -> None:
        self.controller.admin.submit()

    def history(self) -> None:
        self.controller.go(Screen.HISTORY)

    # -- cashiers ---------------------------------------------------------------------------
    def select_cashier(self, cashier_id: str) -> None:
        self.controller.cashiers.select(cashier_id)

    def add_cashier(self) -> None:
        ids = self.ids
        if self.controller.cashiers.add(ids.cashier_id.text, ids.cashier_name.text,
                                        ids.cashier_pin.text,
                                        manager=ids.cashier_manager.state == "down"):
            ids.cashier_id.text = ids.cashier_name.text = ""
            ids.cashier_manager.state = "normal"
        ids.cashier_pin.text = ""  # a PIN never stays on screen

    def set_cashier_pin(self) -> None:
        self.controller.cashiers.set_pin(self.ids.cashier_pin.text)
        self.ids.cashier_pin.text = ""

    def remove_cashier(self) -> None:
        self.controller.cashiers.remove()

    def reports(self) -> None:
        self.controller.go(Screen.REPORT)

    def leave(self) -> None:
        self.controller.go(Screen.SALE)

    def show_tab(self, name: str) -> None:
        self.tab = name
        if name != "cards":
            self.controller.tools.cancel()
        if name != "tests":
            self.controller.tests.disarm()
        self.refresh()

    def test_printer(self) -> None:
        self.controller.spawn(self.controller.test_printer())

    def test_reader(self) -> None:
        self.controller.tests.arm_reader()

    def choose(self, tool: str) -> None:
        self.controller.tools.choose(Tool(tool))

    def tool_action(self) -> None:
        tools = self.controller.tools
        if tools.phase is ToolPhase.CONFIRM:
            tools.confirm()
        else:
            tools.cancel()

    def next_issuer(self) -> None:
        self.controller.tools.next_issuer()

    def next_reason(self) -> None:
        self.controller.blocks.next_reason()
        self.refresh()

    def unblock(self, card_id: str) -> None:
        self.controller.blocks.unblock(card_id)
        self.refresh()

    # -- drawing --------------------------------------------------------------------------
    def refresh(self, *_args) -> None:
        c = self.controller
        lock = c.admin
        ids = self.ids
        unlocked = lock.unlocked
        ids.pad.opacity, ids.pad.disabled = (0, True) if unlocked else (1, False)
        ids.settings.opacity, ids.settings.disabled = (1, False) if unlocked else (0, True)
        ids.message.text = lock.message
        ids.message.color = (1, 0.45, 0.4, 1) if lock.locked or lock.last.value == "wrong" \
            else (1, 1, 1, 1)
        ids.digits.text = lock.masked
        ids.hint.text = self.hint
        ids.pad_keys.disabled = lock.locked
        if not unlocked:
            return
        for name in TABS:
            panel = ids[f"{name}_tab"]
            panel.opacity = 1 if name == self.tab else 0
            ids[f"tab_{name}"].state = "down" if name == self.tab else "normal"
        config = self.config if self.config is not None else c.config
        if config is not None:
            ids.sections.text = "\n".join(
                f"[b]{s.title}[/b]\n" + "\n".join(f"   {line}" for line in s.lines)
                for s in admin_sections(config, reader_state=c.status.reader,
                                        printer_state=c.status.printer)
            )
        ids.enrolled.text = t("admin.enrolled")
        self._draw_tests()
        self._draw_tools()
        self._draw_cashiers()

    def _draw_cashiers(self) -> None:
        from kivy.factory import Factory

        vm, ids = self.controller.cashiers, self.ids
        ids.cashier_id.hint_text = t("cashiers.id.hint")
        ids.cashier_name.hint_text = t("cashiers.name.hint")
        ids.cashier_pin.hint_text = t("cashiers.pin.hint")
        ids.cashier_manager.text = t("cashiers.manager")
        ids.cashier_add.text = t("cashiers.add")
        ids.cashier_set_pin.text = t("cashiers.set_pin")
        ids.cashier_remove.text = t("cashiers.remove")
        ids.cashier_set_pin.disabled = ids.cashier_remove.disabled = not vm.selected_editable
        ids.cashier_message.text = vm.message or vm.empty_text
        ids.cashier_message.color = (1, 1, 1, 1) if vm.ok else (1, 0.45, 0.4, 1)
        ids.roster.clear_widgets()
        for row in vm.rows():
            button = Factory.HistoryRowButton(text=row.text)
            button.bg = (0.08, 0.45, 0.7, 1) if row.cashier_id == vm.selected else \
                (0.24, 0.26, 0.31, 1)
            button.bind(on_release=lambda _b, cid=row.cashier_id: self.select_cashier(cid))
            ids.roster.add_widget(button)

    def _draw_tests(self) -> None:
        c, ids = self.controller, self.ids
        tests = c.tests
        ids.test_printer.text = t("tests.printer")
        ids.test_reader.text = t("tests.reader")
        ids.printer_result.text = tests.printer_text
        ids.printer_result.bg = COLOURS[tests.printer_tone]
        ids.reader_state.text = t("tests.reader.state", text=tests.reader_text(c.status.reader))
        ids.card_seen.text = tests.card_text
        ids.card_seen.bg = COLOURS[tests.card_tone]

    def _draw_tools(self) -> None:
        tools, ids = self.controller.tools, self.ids
        busy = tools.busy
        for tool in Tool:
            button = ids[f"tool_{tool.value}"]
            button.text = t(f"tools.{tool.value}")
            button.disabled = busy
            button.background_color = COLOURS[tools.tone] if tools.tool is tool and \
                tools.phase is not ToolPhase.IDLE else (0.24, 0.26, 0.31, 1)
        confirm = tools.phase is ToolPhase.CONFIRM
        ids.tool_action.text = t("tools.confirm") if confirm else t("tools.cancel")
        ids.tool_action.disabled = busy or tools.phase is ToolPhase.IDLE
        ids.issuer.text = tools.issuer_text
        ids.issuer.disabled = busy
        if ids.card_url.text != tools.card_url and not ids.card_url.focus:
            ids.card_url.text = tools.card_url
        ids.card_url.hint_text = t("tools.url.hint")
        ids.key_file.hint_text = t("tools.key_file.hint")
        ids.tool_title.text = tools.title
        ids.tool_title.bg = COLOURS[tools.tone]
        ids.tool_detail.text = "\n".join(tools.detail_lines)
        ids.tool_next.text = tools.next_text
        self._draw_blocks(tools.tool is Tool.BLOCK)

    _shown_rows: tuple = ()

    def _draw_blocks(self, blocking: bool) -> None:
        """The Block tool's reason row and the list of blocked cards (with Unblock)."""
        from kivy.uix.button import Button
        from kivy.uix.label import Label

        ids, blocks = self.ids, self.controller.blocks
        for panel, shown in ((ids.tool_options, not blocking), (ids.block_options, blocking)):
            panel.opacity, panel.disabled = (1, False) if shown else (0, True)
        ids.block_reason.text = blocks.reason_button_text
        ids.block_custom.hint_text = t("blocks.reason.hint")
        rows = tuple(blocks.rows) if blocking else ()
        ids.blocked_title.text = (t("blocks.list") if rows else t("blocks.none")) \
            if blocking else ""
        if blocking and blocks.notice:
            ids.blocked_title.text += f"   {blocks.notice}"
        if rows == self._shown_rows:
            return
        self._shown_rows = rows
        grid = ids.blocked_list
        grid.clear_widgets()
        for row in rows:
            grid.add_widget(Label(text=row.text, font_size=16, size_hint_y=None, height=40,
                                  halign="left", text_size=(560, None)))
            button = Button(text=t("blocks.unblock"), font_size=16, size_hint=(None, None),
                            size=(140, 40), disabled=not row.can_unblock)
            button.bind(on_release=lambda _b, card_id=row.card_id: self.unblock(card_id))
            grid.add_widget(button)
