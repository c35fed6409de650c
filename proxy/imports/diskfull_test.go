package imports_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/internal/tmpfstest"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestUploadKeepsTheReserve: an upload larger than the room left above
// storage.min_free_bytes is refused with 503 disk_full while it streams,
// before the disk is full, and leaves no file behind; Vigie goes on
// accepting events, and a file that fits is then imported.
func TestUploadKeepsTheReserve(t *testing.T) {
	mnt := tmpfstest.Mount(t, 200<<20)
	const reserve = 64 << 20
	in := proxytest.Start(t, func(c *config.Config) {
		c.DataDir = filepath.Join(mnt, "data")
		c.Storage.MinFreeBytes = reserve
		c.Plugins = []config.Plugin{}
	})
	free := tmpfstest.Free(t, mnt)
	// A file larger than the room above the reserve, generated as it is
	// sent.
	gen := ordersReader(10_000_000)
	defer gen.Close()
	big := io.LimitReader(gen, free-reserve+16<<20)
	code, body := post(t, in, "", contractMapping, big, nil)
	if code != 503 || errCode(t, body) != "disk_full" {
		t.Fatalf("upload past the reserve: %d %s", code, body)
	}
	if got := tmpfstest.Free(t, mnt); got < reserve {
		t.Fatalf("the upload ate into the reserve: %d bytes free", got)
	}
	entries, _ := os.ReadDir(filepath.Join(in.Config.DataDir, "imports"))
	if len(entries) != 0 {
		t.Fatalf("files left behind: %v", entries)
	}
	if code, b := in.Post("/v1/track", "demo", `{"type":"track","event":"E","userId":"u","context":{"consent":{"analytics":true}}}`); code != 200 {
		t.Fatalf("track after the refused upload: %d %s", code, b)
	}
	j := wait(t, in, create(t, in, "", contractMapping, csvOf("order_id,customer,at,total", "o-1,c-1,"+strings.TrimSpace(unixHourAgo())+",1")).ID)
	if j.Rows.Accepted != 1 {
		t.Fatalf("small import after the refusal: %+v (%s)", j.Rows, j.Error)
	}
}
