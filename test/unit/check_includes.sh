#!/bin/sh
# Only src/json.h may include jansson: PostgreSQL's fmgrprotos.h declares
# json_object(), and a jansson json_object() call from the extension binds to
# the server's function at run time and crashes the backend.
cd "$(dirname "$0")/../.."
offenders=$(grep -rlE '#[[:space:]]*include[[:space:]]*[<"]jansson\.h[>"]' src test --include='*.c' --include='*.h' | grep -v '^src/json\.h$')
echo "1..2"
if [ -z "$offenders" ]; then
	echo "ok 1 - only src/json.h includes <jansson.h>"
else
	echo "not ok 1 - other files include <jansson.h>: $offenders"
fi
# and nothing calls json_object() directly
callers=$(grep -rnE '(^|[^_a-z])json_object[[:space:]]*\(' src --include='*.c' | grep -v 'json_object_' )
if [ -z "$callers" ]; then
	echo "ok 2 - no direct json_object() calls"
else
	echo "not ok 2 - direct json_object() calls: $callers"
fi
[ -z "$offenders$callers" ]
