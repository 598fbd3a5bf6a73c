package rdma

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLayoutMatchesHeaders compiles testdata/layout.c against the real
// verbs.h and compares every offset, size and enum this package writes.
func TestLayoutMatchesHeaders(t *testing.T) {
	if _, err := os.Stat("/usr/include/infiniband/verbs.h"); err != nil {
		t.Skip("libibverbs-dev not installed (no /usr/include/infiniband/verbs.h): layout not checked")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler: layout not checked")
	}
	bin := filepath.Join(t.TempDir(), "layout")
	if out, err := exec.Command(cc, "-o", bin, "testdata/layout.c").CombinedOutput(); err != nil {
		t.Fatalf("compile layout.c: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	enums := map[string]int{
		"IBV_WR_RDMA_WRITE": wrRDMAWrite, "IBV_WR_RDMA_WRITE_WITH_IMM": wrRDMAWriteWithImm, "IBV_SEND_SIGNALED": sendSignaled,
		"IBV_WC_RECV_RDMA_WITH_IMM": wcRecvRDMAWithImm, "IBV_QPT_RC": qpTypeRC, "IBV_QP_STATE": maskState, "PKEY": maskPkeyIndex,
		"PORT": maskPort, "ACCESS": maskAccessFlags, "AV": maskAV, "PATH_MTU": maskPathMTU, "DEST_QPN": maskDestQPN, "RQ_PSN": maskRQPSN,
		"MAX_DEST_RD_ATOMIC": maskMaxDestRdAtom, "MIN_RNR_TIMER": maskMinRNRTimer, "TIMEOUT": maskTimeout, "RETRY_CNT": maskRetryCnt,
		"RNR_RETRY": maskRNRRetry, "SQ_PSN": maskSQPSN, "MAX_QP_RD_ATOMIC": maskMaxQPRdAtomic, "ACCESS_LOCAL_WRITE": accessLocalWrite,
		"REMOTE_WRITE": accessRemoteWrite, "WC_SUCCESS": wcSuccess, "LINK_LAYER_ETHERNET": linkLayerEthernet, "PORT_ACTIVE": portActive,
	}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.Atoi(f[i+1])
			if err != nil {
				t.Fatalf("bad line %q", sc.Text())
			}
			want, ok := layoutTable[f[i]]
			if !ok {
				want, ok = enums[f[i]]
			}
			if !ok {
				t.Errorf("layout.c prints %s, which the package does not declare", f[i])
				continue
			}
			if want != v {
				t.Errorf("%s: package says %d, verbs.h says %d", f[i], want, v)
			}
			checked++
		}
	}
	if checked != len(layoutTable)+len(enums) {
		t.Errorf("checked %d values, want %d", checked, len(layoutTable)+len(enums))
	}
}

func TestConnParams(t *testing.T) {
	p := ConnParams{GID: [16]byte{0xfe, 0x80, 15: 1}, LID: 7, QPN: 0x1234, PSN: 0xabcdef, MTU: 5,
		Regions: []RegionKey{{Addr: 0x7f0000000000, Length: 1 << 30, RKey: 99}}}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got ConnParams
	if err := got.UnmarshalBinary(b); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if a, k, err := got.remoteAddr(0, 100, 50); err != nil || a != 0x7f0000000000+100 || k != 99 {
		t.Fatalf("remote addr %x %d %v", a, k, err)
	}
	if _, _, err := got.remoteAddr(0, 1<<30-10, 11); err == nil {
		t.Fatal("write past the region accepted")
	}
	if _, _, err := got.remoteAddr(1, 0, 1); err == nil {
		t.Fatal("unknown region accepted")
	}
	bad := map[string]func([]byte) []byte{
		"short":      func(b []byte) []byte { return b[:10] },
		"version":    func(b []byte) []byte { b[0] = 2; return b },
		"mtu":        func(b []byte) []byte { b[27] = 9; return b },
		"qpn zero":   func(b []byte) []byte { copy(b[19:], []byte{0, 0, 0, 0}); return b },
		"reserved":   func(b []byte) []byte { b[28] = 1; return b },
		"count":      func(b []byte) []byte { b[29] = 2; return b },
		"trailing":   func(b []byte) []byte { return append(b, 0) },
		"wrap":       func(b []byte) []byte { binary.LittleEndian.PutUint64(b[31:], ^uint64(0)); return b },
		"empty area": func(b []byte) []byte { binary.LittleEndian.PutUint64(b[39:], 0); return b },
	}
	for name, mod := range bad {
		t.Run(name, func(t *testing.T) {
			q := ConnParams{QPN: 5}
			if err := q.UnmarshalBinary(mod(append([]byte(nil), b...))); !errors.Is(err, ErrBadParams) {
				t.Fatalf("got %v", err)
			}
			if q.QPN != 5 {
				t.Fatal("refused decode changed the params")
			}
		})
	}
}

func FuzzConnParams(f *testing.F) {
	p := ConnParams{QPN: 1, MTU: 3, Regions: []RegionKey{{Addr: 4096, Length: 4096, RKey: 1}}}
	b, _ := p.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p ConnParams
		if p.UnmarshalBinary(b) != nil {
			return
		}
		again, err := p.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

func TestQPStateMachine(t *testing.T) {
	tests := []struct {
		from, to QPState
		ok       bool
	}{
		{QPSReset, QPSInit, true}, {QPSInit, QPSRTR, true}, {QPSRTR, QPSRTS, true},
		{QPSReset, QPSRTR, false}, {QPSReset, QPSRTS, false}, {QPSInit, QPSRTS, false},
		{QPSRTS, QPSInit, false}, {QPSErr, QPSRTS, false},
	}
	for _, tc := range tests {
		t.Run(tc.from.String()+"->"+tc.to.String(), func(t *testing.T) {
			_, err := nextStep(tc.from, tc.to)
			if (err == nil) != tc.ok {
				t.Fatalf("got %v", err)
			}
		})
	}
	remote := &ConnParams{GID: [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 9}, LID: 3, QPN: 0x77, PSN: 0x55, MTU: 3}
	attrs, masks := connectSequence(1, 3, remote, 5, 0x99)
	u32 := func(a *qpAttr, off int) uint32 { return binary.LittleEndian.Uint32(a[off:]) }
	// INIT: port, access with remote write, pkey 0.
	if u32(attrs[0], offAttrQPState) != uint32(QPSInit) || attrs[0][offAttrPortNum] != 1 || u32(attrs[0], offAttrAccessFlags) != accessLocalWrite|accessRemoteWrite {
		t.Fatalf("init attr % x", attrs[0][:])
	}
	if masks[0] != maskState|maskPkeyIndex|maskPort|maskAccessFlags {
		t.Fatalf("init mask %#x", masks[0])
	}
	// RTR: path MTU is the smaller one, destination qpn/psn, routed via GID.
	a := attrs[1]
	if u32(a, offAttrQPState) != uint32(QPSRTR) || u32(a, offAttrPathMTU) != 3 || u32(a, offAttrDestQPN) != 0x77 || u32(a, offAttrRQPSN) != 0x55 {
		t.Fatalf("rtr attr % x", a[:])
	}
	if a[offAttrIsGlobal] != 1 || a[offAttrSGIDIndex] != 3 || !bytes.Equal(a[offAttrDGID:offAttrDGID+16], remote.GID[:]) || binary.LittleEndian.Uint16(a[offAttrDLID:]) != 3 {
		t.Fatalf("rtr address % x", a[:])
	}
	if masks[1]&(maskAV|maskDestQPN|maskRQPSN|maskPathMTU) != maskAV|maskDestQPN|maskRQPSN|maskPathMTU {
		t.Fatalf("rtr mask %#x", masks[1])
	}
	// RTS: our PSN, retries.
	if u32(attrs[2], offAttrQPState) != uint32(QPSRTS) || u32(attrs[2], offAttrSQPSN) != 0x99 || attrs[2][offAttrRetryCnt] != 7 {
		t.Fatalf("rts attr % x", attrs[2][:])
	}
	// Without a GID (IB in one subnet) the address is the LID only.
	a, _ = rtrAttr(1, 0, &ConnParams{LID: 9, QPN: 1, MTU: 5}, 5)
	if a[offAttrIsGlobal] != 0 || binary.LittleEndian.Uint16(a[offAttrDLID:]) != 9 {
		t.Fatal("LID-only address set a GRH")
	}
}

func fakeIfaces() ([]Iface, error) {
	return []Iface{
		{Name: "lo", Addrs: []net.IP{net.ParseIP("127.0.0.1")}},
		{Name: "eth0", Addrs: []net.IP{net.ParseIP("10.0.0.5")}},
		{Name: "eth1", Addrs: []net.IP{net.ParseIP("fd00::42")}},
		{Name: "ib0", Addrs: []net.IP{net.ParseIP("192.168.50.2")}},
		{Name: "eth9", Addrs: []net.IP{net.ParseIP("172.20.0.9")}},
	}, nil
}

func TestDiscoveryFakeSysfs(t *testing.T) {
	d := &Discovery{SysfsRoot: "testdata/sysfs", Interfaces: fakeIfaces}
	if !d.HasDevices() {
		t.Fatal("fake sysfs has devices")
	}
	tests := []struct {
		ip       string
		dev      string
		gidIndex int
		v2, ib   bool
		wantErr  bool
	}{
		{ip: "10.0.0.5", dev: "mlx5_0", gidIndex: 3, v2: true}, // the RoCE v2 GID equal to the address
		{ip: "fd00::42", dev: "mlx5_1", gidIndex: 1, v2: true},
		{ip: "192.168.50.2", dev: "mlx5_2", gidIndex: 0, ib: true}, // IPoIB through the PCI function
		{ip: "172.20.0.9", wantErr: true},                          // an interface without RDMA
		{ip: "127.0.0.1", wantErr: true},
		{ip: "10.9.9.9", wantErr: true}, // no interface holds it
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			got, err := d.ForLocalIP(net.ParseIP(tc.ip))
			if tc.wantErr {
				if !errors.Is(err, ErrNoDeviceForAddr) {
					t.Fatalf("got %+v, %v", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.dev || got.GIDIndex != tc.gidIndex || got.RoCEv2 != tc.v2 || got.IB != tc.ib || got.Port != 1 {
				t.Fatalf("got %+v", got)
			}
		})
	}
	// The real /sys of this machine: just report.
	real := &Discovery{}
	t.Logf("this host has rdma devices: %v", real.HasDevices())
}

func TestParseGID(t *testing.T) {
	g, ok := parseGID("0000:0000:0000:0000:0000:ffff:0a00:0005")
	if !ok || !net.IP(g[:]).Equal(net.ParseIP("10.0.0.5")) {
		t.Fatalf("%x %v", g, ok)
	}
	for _, bad := range []string{"", "fe80::1", "zzzz:0000:0000:0000:0000:0000:0000:0000", "0:0:0:0:0:0:0:0"} {
		if _, ok := parseGID(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}
