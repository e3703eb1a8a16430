#!/usr/bin/env sh
# Regenerate the Python bindings of fleet.proto. Run from anywhere; needs grpcio-tools in the venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
python=${PYTHON:-"$src/../.venv/bin/python"}
"$python" -m grpc_tools.protoc -I "$src" --python_out="$src" --pyi_out="$src" --grpc_python_out="$src" \
  "$src/fedlearn/runtime/proto/fleet.proto"
for f in "$here"/fleet_pb2.py "$here"/fleet_pb2.pyi "$here"/fleet_pb2_grpc.py; do
  { printf '# ruff: noqa\n# Generated from fleet.proto by regenerate.sh; do not edit.\n'; cat "$f"; } > "$f.tmp"
  mv "$f.tmp" "$f"
done
