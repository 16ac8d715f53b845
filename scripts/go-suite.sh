# Helpers shared by the scripts that build Go test suites (scripts/critest,
# scripts/runtime-tools); sourced, not run.

# The go to build with: $GO, else go on PATH, else Debian/upstream's default place.
go_bin() {
	if [[ -n ${GO:-} ]]; then
		echo "$GO"
	elif command -v go >/dev/null; then
		command -v go
	else
		echo /usr/local/go/bin/go
	fi
}

# Seconds since a `date +%s.%N` stamp, to 0.1s.
elapsed() {
	awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}
