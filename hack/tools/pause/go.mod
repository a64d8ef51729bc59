module trainpipe.local/hack/tools/pause

go 1.26.0
