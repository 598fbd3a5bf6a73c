package tcp_test

func helperMain() bool { return false }
