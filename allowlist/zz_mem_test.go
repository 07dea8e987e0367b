package allowlist

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"

	wstate "gitlab.com/writ-ci/writ/internal/state"
)

func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

func TestZZMem(t *testing.T) {
	dir := os.Getenv("ZZDIR")
	if dir == "" {
		t.Skip()
	}
	st, err := wstate.NewLocal(dir + "/state").Allowlist(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("base", heapMB())
	data, _ := os.ReadFile(dir + "/al/allowlist.yaml")
	fmt.Println("data", heapMB())
	prev, err := openVerified(dir+"/cache/allowlist-verified-"+st.CacheSHA256+".store", st.CacheSHA256)
	if err != nil {
		t.Fatal(err)
	}
	var pm acceptMemo
	prev.readWith(prev.header.Memo, func(b []byte) error { return pm.unmarshal(b) })
	decoderID = func() string { return pm.Codec }
	al, m, err := parseAccept(FileName, data, nil, prev)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("parsed", heapMB(), reused(m))
	data = nil
	fmt.Println("no data", heapMB())
	parts, _, err := encodeVerified(&cached{Parsed: al, memo: m})
	fmt.Println("encoded", heapMB(), len(parts[1])>>20, err)
	runtime.KeepAlive(al)
	runtime.KeepAlive(parts)
}
