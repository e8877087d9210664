# Shared by test/run-all and test/demo: dependencies, build, and running
# PostgreSQL as an unprivileged user (it refuses to run as root).

PG_MAJOR=15
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PGBIN/pg_config
PGXS_DIR=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs
PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
TEST_USER=${TEST_USER:-postgres}

APT_PACKAGES="make gcc pkg-config postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR
	postgresql-server-dev-$PG_MAJOR libcurl4-openssl-dev libjansson-dev libipc-run-perl
	openssl libio-socket-ssl-perl valgrind clang libclang-rt-14-dev"

# Install whatever is missing (Debian 12); quick when all is there.
ensure_deps()
{
	local missing=""
	for p in $APT_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
	done
	command -v node >/dev/null && command -v npm >/dev/null || missing="$missing nodejs npm"
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
