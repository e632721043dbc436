#!/usr/bin/env bash
# Installs what tl builds and tests with, from Debian's packages. Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config ca-certificates \
  libopenblas-openmp-dev libhdf5-dev hdf5-tools libpcap-dev libcyaml-dev \
  libcjson-dev libcsv-dev libcriterion-dev zlib1g-dev libdeflate-dev >/dev/null
echo "tl: dependencies installed"
