module github.com/bsm/gomega

go 1.18
