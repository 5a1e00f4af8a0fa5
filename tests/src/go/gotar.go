// gotar lists tar archives the way Go's archive/tar reads them (the reader docker, containerd,
// podman and containers/storage unpack layers with). For each file argument it prints
// "archive", then one line per entry, then "ok" or "error MESSAGE". An entry line is
// "entry TYPE NAME LINK SIZE MODE UID GID MTIME NSEC MAJOR MINOR SHA256 XATTRS" with TYPE the
// type flag in hex, NAME and LINK in hex ("-" when empty), SHA256 the hash of the data Go reads,
// and XATTRS the SCHILY.xattr records as hex name=value pairs joined by "," ("-" when none).
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func h(s string) string {
	if s == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(s))
}

func list(w *bufio.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			return err
		}
		var xattrs []string
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xattrs = append(xattrs, h(k[len("SCHILY.xattr."):])+"="+h(v))
			}
		}
		sort.Strings(xattrs)
		x := "-"
		if len(xattrs) > 0 {
			x = strings.Join(xattrs, ",")
		}
		fmt.Fprintf(w, "entry %02x %s %s %d %d %d %d %d %d %d %d %x %s\n",
			hdr.Typeflag, h(hdr.Name), h(hdr.Linkname), hdr.Size, hdr.Mode, hdr.Uid, hdr.Gid,
			hdr.ModTime.Unix(), hdr.ModTime.Nanosecond(), hdr.Devmajor, hdr.Devminor,
			sum.Sum(nil), x)
	}
}

func main() {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, path := range os.Args[1:] {
		fmt.Fprintln(w, "archive")
		if err := list(w, path); err != nil {
			fmt.Fprintf(w, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Fprintln(w, "ok")
		}
	}
}
