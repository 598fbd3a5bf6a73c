package rdma

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/Mellanox/rdmamap"
)

// Device is the RDMA device, port and GID that serve one IP address.
type Device struct {
	Name     string // e.g. mlx5_0
	Port     uint8  // 1-based
	GIDIndex int
	GID      [16]byte
	Netdev   string // the network interface carrying the address
	RoCEv2   bool
	IB       bool // link layer InfiniBand (IPoIB), not Ethernet
}

// Iface is a network interface and its addresses.
type Iface struct {
	Name  string
	Addrs []net.IP
}

// Discovery finds the RDMA device that serves an address, reading sysfs
// through rdmamap.
type Discovery struct {
	// SysfsRoot is where sysfs is mounted ("" = /sys); tests point it at a
	// fake tree.
	SysfsRoot string
	// Interfaces lists the network interfaces (nil = net.Interfaces).
	Interfaces func() ([]Iface, error)
}

// rdmamap reads package-level paths; they are pointed at SysfsRoot for
// one lookup at a time.
var rdmamapMu sync.Mutex

func (d *Discovery) root() string {
	if d.SysfsRoot == "" {
		return "/sys"
	}
	return d.SysfsRoot
}

func (d *Discovery) interfaces() ([]Iface, error) {
	if d.Interfaces != nil {
		return d.Interfaces()
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []Iface
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		it := Iface{Name: i.Name}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				it.Addrs = append(it.Addrs, ipn.IP)
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// HasDevices reports whether sysfs lists any RDMA device.
func (d *Discovery) HasDevices() bool {
	rdmamapMu.Lock()
	defer rdmamapMu.Unlock()
	defer d.point()()
	return len(rdmamap.GetRdmaDeviceList()) > 0
}

// point aims rdmamap at the sysfs root and returns the restore func.
func (d *Discovery) point() func() {
	oldClass, oldPCI := rdmamap.RdmaClassDir, rdmamap.PciDevDir
	rdmamap.RdmaClassDir = filepath.Join(d.root(), "class", "infiniband")
	rdmamap.PciDevDir = filepath.Join(d.root(), "bus", "pci", "devices")
	return func() { rdmamap.RdmaClassDir, rdmamap.PciDevDir = oldClass, oldPCI }
}

// ForPeer finds the device serving the local address this host uses to
// reach peer (host:port). No packet is sent: a UDP "dial" only asks the
// kernel's routing table.
func (d *Discovery) ForPeer(peer string) (Device, error) {
	c, err := net.Dial("udp", peer)
	if err != nil {
		return Device{}, fmt.Errorf("rdma: route to %s: %w", peer, err)
	}
	local := c.LocalAddr().(*net.UDPAddr).IP
	c.Close()
	return d.ForLocalIP(local)
}

// ErrNoDeviceForAddr: no RDMA device serves the address.
var ErrNoDeviceForAddr = errors.New("rdma: no rdma device serves the address")

// ForLocalIP finds the device, port and GID index for a local address:
// the interface holding ip, then the RDMA port whose GID table lists that
// interface (RoCE), preferring the GID equal to ip and RoCE v2; for IPoIB
// interfaces, the device behind the same PCI function.
func (d *Discovery) ForLocalIP(ip net.IP) (Device, error) {
	ifs, err := d.interfaces()
	if err != nil {
		return Device{}, err
	}
	netdev := ""
	for _, i := range ifs {
		for _, a := range i.Addrs {
			if a.Equal(ip) {
				netdev = i.Name
			}
		}
	}
	if netdev == "" {
		return Device{}, fmt.Errorf("%w: no interface holds %s", ErrNoDeviceForAddr, ip)
	}
	rdmamapMu.Lock()
	defer rdmamapMu.Unlock()
	defer d.point()()

	type cand struct {
		dev   Device
		score int
	}
	var cands []cand
	for _, dev := range rdmamap.GetRdmaDeviceList() {
		for _, port := range rdmamap.GetPorts(dev) {
			pn, err := strconv.Atoi(port)
			if err != nil || pn < 1 || pn > 255 {
				continue
			}
			pdir := filepath.Join(rdmamap.RdmaClassDir, dev, rdmamap.RdmaPortsdir, port)
			if strings.Contains(readLine(filepath.Join(pdir, "link_layer")), "InfiniBand") {
				continue // IPoIB is matched through PCI below
			}
			entries, _ := os.ReadDir(filepath.Join(pdir, rdmamap.RdmaGidAttrDir, rdmamap.RdmaGidAttrNdevDir))
			for _, e := range entries {
				if readLine(filepath.Join(pdir, rdmamap.RdmaGidAttrDir, rdmamap.RdmaGidAttrNdevDir, e.Name())) != netdev {
					continue
				}
				idx, err := strconv.Atoi(e.Name())
				if err != nil {
					continue
				}
				gid, ok := parseGID(readLine(filepath.Join(pdir, "gids", e.Name())))
				if !ok || gid == ([16]byte{}) {
					continue
				}
				typ := readLine(filepath.Join(pdir, rdmamap.RdmaGidAttrDir, "types", e.Name()))
				c := cand{dev: Device{Name: dev, Port: uint8(pn), GIDIndex: idx, GID: gid, Netdev: netdev, RoCEv2: typ == "RoCE v2"}}
				if net.IP(gid[:]).Equal(ip) {
					c.score += 2
				}
				if c.dev.RoCEv2 {
					c.score++
				}
				cands = append(cands, c)
			}
		}
	}
	if len(cands) > 0 {
		sort.SliceStable(cands, func(i, j int) bool {
			if cands[i].score != cands[j].score {
				return cands[i].score > cands[j].score
			}
			return cands[i].dev.GIDIndex < cands[j].dev.GIDIndex
		})
		return cands[0].dev, nil
	}
	// IPoIB (or a RoCE device without gid_attrs): the RDMA device of the
	// interface's PCI function.
	link, err := os.Readlink(filepath.Join(d.root(), "class", "net", netdev, "device"))
	if err == nil {
		pci := filepath.Base(link)
		if devs := rdmamap.GetRdmaDevicesForPcidev(pci); len(devs) > 0 {
			sort.Strings(devs)
			dev := Device{Name: devs[0], Port: 1, GIDIndex: 0, Netdev: netdev}
			pdir := filepath.Join(rdmamap.RdmaClassDir, dev.Name, rdmamap.RdmaPortsdir, "1")
			dev.IB = strings.Contains(readLine(filepath.Join(pdir, "link_layer")), "InfiniBand")
			dev.GID, _ = parseGID(readLine(filepath.Join(pdir, "gids", "0")))
			return dev, nil
		}
	}
	return Device{}, fmt.Errorf("%w: %s (on %s)", ErrNoDeviceForAddr, ip, netdev)
}

func readLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parseGID parses sysfs's "fe80:0000:0000:0000:0202:c9ff:fe00:0001".
func parseGID(s string) ([16]byte, bool) {
	var g [16]byte
	parts := strings.Split(s, ":")
	if len(parts) != 8 {
		return g, false
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 16, 16)
		if err != nil || len(p) != 4 {
			return g, false
		}
		g[2*i], g[2*i+1] = byte(v>>8), byte(v)
	}
	return g, true
}
