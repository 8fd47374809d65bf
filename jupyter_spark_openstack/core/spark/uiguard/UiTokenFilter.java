/*
 * A servlet filter for Spark's web UIs (spark.ui.filters): every request must carry the
 * cluster's UI token in the X-Spark-UI-Token header, else 403. The token is read once from the
 * file named by the filter parameter "tokenFile" (spark.<this class>.param.tokenFile), which
 * only the cluster's owner can read. The notebook server's proxy and the hub add the header;
 * another account on the same host, which can reach the loopback ports, cannot.
 *
 * Part of jupyter-spark-openstack (BSD-3-Clause).
 */
package org.jupyter_spark_openstack;

import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.FilterConfig;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;

public class UiTokenFilter implements Filter {
    public static final String HEADER = "X-Spark-UI-Token";
    private byte[] token;

    @Override
    public void init(FilterConfig config) throws ServletException {
        String file = config.getInitParameter("tokenFile");
        if (file == null || file.isEmpty()) {
            throw new ServletException("UiTokenFilter: the parameter tokenFile is not set");
        }
        try {
            String text = new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.UTF_8).trim();
            if (text.isEmpty()) {
                throw new ServletException("UiTokenFilter: " + file + " is empty");
            }
            token = text.getBytes(StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new ServletException("UiTokenFilter: cannot read " + file + ": " + e, e);
        }
    }

    @Override
    public void doFilter(ServletRequest req, ServletResponse res, FilterChain chain)
            throws IOException, ServletException {
        String got = ((HttpServletRequest) req).getHeader(HEADER);
        if (got != null && MessageDigest.isEqual(got.getBytes(StandardCharsets.UTF_8), token)) {
            chain.doFilter(req, res);
            return;
        }
        HttpServletResponse r = (HttpServletResponse) res;
        r.setStatus(403);
        r.setContentType("text/plain;charset=utf-8");
        r.getWriter().write("This Spark UI belongs to another user's cluster. Open your own "
                + "through JupyterLab's Spark cluster panel.\n");
    }

    @Override
    public void destroy() {
    }
}
