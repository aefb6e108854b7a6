package dbtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Cluster is a throwaway PostgreSQL server of one test's own, for the tests
// that restart or crash the warehouse (the shared server must not be).
// It needs PostgreSQL's server programs (initdb, pg_ctl), which `make test`
// installs with the server.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	owner string // the user the server runs as, when the test runs as root
}

// NewCluster initialises and starts a cluster (trust authentication on
// 127.0.0.1, a free port); it is stopped and removed when t ends.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBin()
	if err != nil {
		msg := fmt.Sprintf("dbtest: %v: install PostgreSQL's server (make test does)", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "ferry-cluster-")
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	c := &Cluster{t: t, bin: bin, dir: dir, port: freePort(t)}
	// initdb refuses to run as root: the server runs as postgres then.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("dbtest: running as root, and no postgres user to run a cluster as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("dbtest: %v", err)
		}
		c.owner = "postgres"
	}
	t.Cleanup(func() {
		_ = c.ctl("stop", "-m", "immediate", "-w")
		_ = os.RemoveAll(dir)
	})
	data := filepath.Join(dir, "data")
	if out, err := c.command(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("dbtest: initdb: %v\n%s", err, out)
	}
	if err := c.ctl("start", "-w"); err != nil {
		t.Fatalf("dbtest: starting the cluster: %v", err)
	}
	return c
}

// URL is the cluster's postgres database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Restart stops the cluster the way a crash does (immediate: no
// checkpoint, every connection cut) and starts it again.
func (c *Cluster) Restart() {
	c.t.Helper()
	if err := c.ctl("restart", "-m", "immediate", "-w"); err != nil {
		c.t.Fatalf("dbtest: restarting the cluster: %v", err)
	}
}

func (c *Cluster) ctl(args ...string) error {
	data := filepath.Join(c.dir, "data")
	full := append([]string{"-D", data, "-l", filepath.Join(c.dir, "log"),
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off", c.port, c.dir)}, args...)
	out, err := c.command(filepath.Join(c.bin, "pg_ctl"), full...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl %s: %w\n%s\n%s", strings.Join(args, " "), err, out, log)
	}
	return nil
}

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	if c.owner != "" {
		return exec.Command("runuser", append([]string{"-u", c.owner, "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// serverBin finds PostgreSQL's server programs.
func serverBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("no initdb found (PostgreSQL's server programs)")
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
