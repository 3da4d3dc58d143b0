#!/bin/sh
# setup.sh -- install the Debian 12 packages ufm needs (only those missing),
# then configure and build. Idempotent: when everything is in place it only
# runs an up-to-date `make`, in a second or two.
#
#   ./setup.sh           what ufm and `make check` need (with fonts-lmodern,
#                        the face of figure_style=paper figures)
#   ./setup.sh --paper   also what `make paper` needs: pdflatex and the LaTeX
#                        packages of paper/ufm.tex, poppler-utils (the PDF
#                        check) and PyTorch (the performance table's column)
set -eu
cd "$(dirname "$0")"

PKGS="gcc make autoconf automake pkg-config libgsl-dev libopenblas-dev libcmocka-dev gnuplot-nox fonts-lmodern python3-numpy"
PAPER_PKGS="texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils python3-torch"
case "${1:-}" in
  --paper) PKGS="$PKGS $PAPER_PKGS" ;;
  "") ;;
  *) echo "usage: ./setup.sh [--paper]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  echo "setup: installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
  autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
  ./configure
fi
make -j"$(nproc)"
