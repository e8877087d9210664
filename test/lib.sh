# Shared by the test scripts: dependencies, build, and running PostgreSQL as
# an unprivileged user (it refuses to run as root).  PG_MAJOR chooses the
# server to build and test against; it defaults to the newest one installed
# (Debian 12 has 15; test/matrix runs 17 and 18 in Debian chroots).

if [ -z "${PG_MAJOR:-}" ]; then
	PG_MAJOR=$(ls /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
	PG_MAJOR=${PG_MAJOR:-15}
fi
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PGBIN/pg_config
PGXS_DIR=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs
PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
TEST_USER=${TEST_USER:-postgres}

# What building and testing against one major needs (also in the chroots).
APT_PACKAGES="make gcc pkg-config postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR
	postgresql-server-dev-$PG_MAJOR libcurl4-openssl-dev libjansson-dev libipc-run-perl
	openssl libio-socket-ssl-perl valgrind curl procps"
# Only on the host: the fuzzers and the chroots of the version matrix.  Node.js
# (the test server) is taken from the machine when it has one.
HOST_APT_PACKAGES="clang libclang-rt-14-dev debootstrap"

# Install whatever is missing; quick when all is there.  "ensure_deps host"
# adds what only the host needs.
ensure_deps()
{
	local missing="" p
	for p in $APT_PACKAGES ${1:+$HOST_APT_PACKAGES}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
	done
	command -v node >/dev/null || missing="$missing nodejs"
	[ -n "${1:-}" ] && ! command -v npm >/dev/null && missing="$missing npm"
	if [ -n "$missing" ]; then
		echo "installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq $missing >/dev/null
	fi
	id -u "$TEST_USER" >/dev/null 2>&1 ||
		useradd --system --no-create-home --shell /usr/sbin/nologin "$TEST_USER"
}

npm_install()
{
	if [ "${1:-}" = "always" ] || [ ! -d test/node_modules ]; then
		(cd test && npm ci --no-audit --no-fund --loglevel=error)
	fi
}

build_install()
{
	make -s PG_CONFIG="$PG_CONFIG" >/dev/null
	make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# A scratch directory the test user owns (the checkout may be root-only).
make_workdir()
{
	local w
	w=$(mktemp -d)
	chmod 755 "$w"
	chown "$TEST_USER": "$w"
	echo "$w"
}

as_test_user()
{
	runuser -u "$TEST_USER" -- "$@"
}

free_port()
{
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}
