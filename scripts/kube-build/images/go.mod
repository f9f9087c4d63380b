module nimbus.local/kube-build/images

go 1.26.0
