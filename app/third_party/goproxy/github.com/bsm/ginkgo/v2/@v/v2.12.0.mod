module github.com/bsm/ginkgo/v2

go 1.18
