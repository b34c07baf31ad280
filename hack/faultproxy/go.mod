module confidential-operator/hack/faultproxy

go 1.26
