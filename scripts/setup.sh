#!/usr/bin/env bash
# Install everything echolab needs on a fresh Debian machine (run as root).
# Idempotent: a second run only checks. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages, and what each is for:
APT_PACKAGES=(
  python3 python3-venv python3-dev  # Python 3.11 and venv for the project's virtual environment
  tshark        # captures the Echo's traffic at the gateway (and dissects packets for `catalog show`)
  tcpdump       # makes test captures on loopback and in the simulated lab
  tcptrace      # the reference tool whose statistics the tcptrace feature set reproduces (test oracle)
  nftables      # drops packets after capture in the tcptrace oracle tests, so captures hold retransmissions
  espeak-ng     # offline speech engine for the voice prompts
  libportaudio2 # sound output to the Echo's speaker (sounddevice)
  postgresql    # a shared catalog for labs that want one; the catalog tests run against it too
  iproute2      # network namespaces and veth links of the simulated lab
  ethtool       # turns segmentation offloads off in the simulated lab
  openssl       # certificates for the simulated Alexa cloud's TLS
  procps        # ps/pkill used to clean up after the simulated lab
  sox           # measures synthesized audio in tests
  gcc           # builds Python packages that have no wheel for this machine
  chromium chromium-driver  # headless browser: tests of the catalog's web pages ('catalog serve') look at them in it
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "echolab setup: these system packages are missing: ${missing[*]}; run this as root (or install them with sudo apt-get install ...)" >&2
    exit 1
  fi
  echo "echolab setup: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "echolab setup: creating the virtual environment .venv"
  "$PY" -m venv .venv
fi
# echolab is installed as a package (not editable), so the tests run against what
# `pip install` really installs. A change to pyproject.toml reinstalls the dependencies;
# a change to the sources only reinstalls echolab itself (a few seconds).
stamp=.venv/.echolab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "echolab setup: installing echolab with all extras and the test tools into .venv"
  .venv/bin/pip install -q --upgrade pip
  rm -rf build
  .venv/bin/pip install -q '.[all,test]'  # all: every extra (the tests serve the catalog, train the CNN, ...)
  touch "$stamp"
elif [ -n "$(find echolab db prompts collector analysis -newer "$stamp" -print -quit)" ]; then
  echo "echolab setup: the sources changed; reinstalling echolab into .venv"
  rm -rf build  # setuptools would package stale modules left there by an earlier build
  .venv/bin/pip install -q --no-deps --force-reinstall .
  touch "$stamp"
fi
