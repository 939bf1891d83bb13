# Shared bootstrap for scripts/test, scripts/demo and scripts/screenshots (sourced, not run).
# Debian/Ubuntu packages the terminal and its tests need: Mesa/EGL for Kivy's offscreen window,
# libmtdev1 for Kivy's input providers, libusb for nfcpy, zbarimg to decode on-screen QR codes,
# systemd for `systemd-analyze verify`, shellcheck for the install scripts, openssl for the
# throwaway certificate of the HTTPS pinning test.
SYSTEM_PACKAGES=(python3-venv libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libmtdev1
    libusb-1.0-0 zbar-tools systemd shellcheck openssl)

bootstrap_system_packages() {
    local missing=()
    for p in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "== installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "!! missing system packages (run as root or: sudo apt-get install ${missing[*]})" >&2
    fi
}

bootstrap_venv() {
    local py="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        "$py" -m venv .venv
    fi
    local stamp=.venv/.flash-terminal-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing flash-terminal[dev] into .venv"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[dev]"
        touch "$stamp"
    fi
}
