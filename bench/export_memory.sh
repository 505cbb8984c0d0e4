#!/usr/bin/env bash
# Measure (with `make bench` having built ly_bench) Ly's peak RSS while exporting the 1,000,000-shelter bench set as GeoPackage and GeoJSON.
set -u
cd "$(dirname "$0")/.."
export DATABASE_URL=postgresql://ly:ly@127.0.0.1:5432/ly_bench LY_DEV_KEY_FILE=bench/.cache/export-key.pem
.venv/bin/ly dev-key --key-file bench/.cache/export-key.pem >/dev/null
TOKEN=$(.venv/bin/ly dev-token --key-file bench/.cache/export-key.pem --role national_reader --ttl 7200)
.venv/bin/python -m uvicorn service.main:app --port 8010 --log-level warning &
PID=$!
for i in $(seq 1 60); do curl -sf localhost:8010/healthz >/dev/null && break; sleep 1; done
echo "baseline VmHWM: $(grep VmHWM /proc/$PID/status)"
for f in gpkg geojson; do
  start=$(date +%s.%N)
  curl -s -H "Authorization: Bearer $TOKEN" -o bench/.cache/export.$f "localhost:8010/collections/beskyttelsesrum/items?f=$f"
  end=$(date +%s.%N)
  echo "$f: $(stat -c %s bench/.cache/export.$f) bytes in $(echo "$end - $start" | bc) s; $(grep VmHWM /proc/$PID/status)"
done
.venv/bin/python -c "import pyogrio; print('gpkg features:', pyogrio.read_info('bench/.cache/export.gpkg')['features'])"
kill $PID
