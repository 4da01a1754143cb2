# Sourced by tools/check.sh and tools/quickstart.sh: installs, on Debian 12, the packages brigade needs
# that are missing. Uses apt-get as root, or through sudo.
brg_install_deps() {
    local pkgs="gcc g++ meson ninja-build pkg-config python3 libhwloc-dev hwloc libjemalloc-dev libcunit1-dev libopenmpi-dev openmpi-bin
                libjansson-dev libopenblas-dev libxml2-dev ${BRG_EXTRA_PACKAGES:-}"
    local missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -q >/dev/null || return 1
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null || return 1
    fi
    # The tests' independent reference for safetensors files and GPT-2 (tests/runtime/hf_gpt2.py).
    if ! python3 -c "import numpy, safetensors.numpy" 2>/dev/null; then
        echo "installing: numpy safetensors (pip)"
        python3 -m pip install -q numpy safetensors >/dev/null 2>&1 ||
            python3 -m pip install -q --break-system-packages numpy safetensors >/dev/null || return 1
    fi
}
