#!/usr/bin/env bash
# System packages Ly's setup needs beyond the database (that is scripts/provision-db.sh):
# a Python with venv (Debian/Ubuntu split it into python3-venv), Debian's Chromium for
# the browser tests, QGIS's Python bindings (python3-qgis, for Debian's /usr/bin/python3)
# for the QGIS test, and LibreOffice Calc without its GUI (libreoffice-calc-nogui: soffice
# --headless converts CSV/XLSX; it brings its own locale data, so no system locale is
# generated) for the desktop-file tests. Installs them when missing and running as root;
# otherwise says what to run.
set -euo pipefail
missing=()
lean=()  # without recommended packages (python3-qgis would pull in the QGIS desktop;
         # libreoffice-calc-nogui fonts, AppArmor, python3-uno, xdg-utils)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv python3-dev)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
/usr/bin/python3 -c 'import qgis.core' >/dev/null 2>&1 || lean+=(python3-qgis)
command -v soffice >/dev/null 2>&1 || lean+=(libreoffice-calc-nogui)
[ ${#missing[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${missing[*]} ${lean[*]} ..."
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || {
      echo "system-deps: could not install ${missing[*]}" >&2; exit 1; }
  fi
  if [ ${#lean[@]} -gt 0 ]; then
    # Only the QGIS and desktop-file tests need them, and they skip without them.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}" \
      >/dev/null || echo "system-deps: could not install ${lean[*]}; the QGIS and" \
                         "LibreOffice tests will skip" >&2
  fi
else
  echo "system-deps: missing ${missing[*]} ${lean[*]}; install with: sudo apt-get install -y" \
       "${missing[*]}; sudo apt-get install -y --no-install-recommends ${lean[*]}" >&2
  # Chromium only serves the browser tests, which skip without it; a missing venv is fatal.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || exit 1
fi
