#!/bin/sh
# A binary:// logger for tests: called as `logger.sh out FILE err FILE`; copies the
# container's stdout (fd 3) and stderr (fd 4) into the files, says ready on fd 5.
cat <&3 >"$2" &
cat <&4 >"$4" &
exec 3<&- 4<&-
echo ready >&5
exec 5>&-
wait
