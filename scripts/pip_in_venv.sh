# Sourced by the setup scripts: pip_check_install ARGS... installs into "$VENV" and returns pip's exit status,
# printing pip's output only on failure, without its noise about absent local index folders.
pip_check_install() {
  local log; log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" >"$log" 2>&1; then
    grep -v "is ignored: it is neither" "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
}
